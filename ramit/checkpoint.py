"""RAMiT checkpoints: read every form users have, infer the network they hold, load them with one-line errors.

The one checkpoint API of the package, used by inference, BasicSR (RAMiTModel, the option checks), mmengine
(RAMiTRestorer's ``pretrained``, ``ramit mm-test``) and spandrel:

- ``read_checkpoint(path, param_key)`` -> (state dict, description, entry): the file's weights, unwrapped, what the
  file says about the network (``{}`` when it says nothing, as the authors' raw files) and the entry the weights
  came from ('params_ema', ...; None for a raw state dict); PyTorch files are read with ``weights_only``,
  safetensors files (``.safetensors``, or any file with a safetensors header) without pickle;
- ``infer_arguments(state_dict, description, task)`` -> the ``RAMiT(**arguments)`` that rebuild the network,
  custom sizes included: what shapes show comes from the shapes, the rest from the description or the task;
- ``load_weights(net, source, ...)`` -> ``net`` with the weights loaded, after checking that every tensor fits;
- ``write_safetensors(path, state_dict, description)`` and ``save_torch(obj, path)``: atomic writes.
"""
import io
import json
import math
import os
import re
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file

from .errors import CheckpointError, CheckpointNotFoundError
from .fileio import atomic_output
from .hparams import ARGUMENT_KEYS, TASKS, VARIANTS, describe, minimal_arguments, resolve_hparams
from .network import RAMiT, expanded_channels

StateDict = Dict[str, torch.Tensor]
Source = Union[str, os.PathLike, dict]
# Where the weights sit in wrapped checkpoints, EMA first: BasicSR keeps the EMA weights beside the raw ones,
# mmengine uses 'state_dict'. An explicit param_key (BasicSR's param_key_g) is taken first when the file has it.
WRAPPER_KEYS = ('params_ema', 'params', 'state_dict', 'model')
ANCHOR = 'shallow.conv.weight'
# Key of the network description saved with the weights: a dict of RAMiT(...) arguments beside them in RAMiTModel's
# .pth files; JSON in the header and in a uint8 tensor of that name in safetensors files (write_safetensors).
DESCRIPTION_KEY = 'ramit_config'
SAFETENSORS_SUFFIX = '.safetensors'
# Not visible in any shape: taken from the description when the file has it, else the task's defaults.
HIDDEN_KEYS = ('helper', 'img_norm')


class CheckpointMismatchError(CheckpointError):
    """A checkpoint whose keys, shapes or tensor types do not fit the network it is loaded into."""


class Checkpoint(NamedTuple):
    """What ``read_checkpoint`` finds in a file."""

    weights: StateDict
    description: dict
    entry: Optional[str]  # where the weights sat ('params_ema', 'params', 'state_dict', ...); None: at the top


class _Dropped:
    """Stands in for a logged object of an mmengine checkpoint (its HistoryBuffers) while only weights are wanted."""

    def __init__(self, *args, **kwargs) -> None:
        pass


_MULTIARRAY = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray  # numpy 2 / numpy 1
# What an mmengine Runner checkpoint holds besides tensors (logged numpy values and HistoryBuffers), readable with
# weights_only for the duration of one read: the process-wide allow-list is never widened here.
TRAINING_FILE_GLOBALS = [np.ndarray, np.dtype, _MULTIARRAY._reconstruct, _MULTIARRAY.scalar,
                         *(type(np.dtype(t)) for t in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8,
                                                       np.uint16, np.uint32, np.uint64, np.float16, np.float32,
                                                       np.float64)),
                         (_Dropped, 'mmengine.logging.history_buffer.HistoryBuffer')]


# ------------------------------------------------------------------------------------------------------ reading
def torch_load(path: Union[str, os.PathLike], what: str = 'PyTorch checkpoint') -> object:
    """``torch.load`` on the CPU with ``weights_only`` (numpy values and mmengine's logged buffers allowed for this
    call only); CheckpointError naming the file, with the reason in a few words, when it cannot be read."""
    path = os.fspath(path)
    # Only what is not allowed already: leaving the context removes its globals from the process-wide list.
    allowed = torch.serialization.get_safe_globals()
    try:
        with torch.serialization.safe_globals([g for g in TRAINING_FILE_GLOBALS if g not in allowed]):
            return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f'{path}: not a readable {what} ({load_error_reason(err)})') from None


def read_checkpoint(path: Union[str, os.PathLike], param_key: Optional[str] = None) -> Checkpoint:
    """The bare RAMiT state dict, description (or {}) and entry of a checkpoint file, loaded on the CPU: safetensors
    without pickle, PyTorch files with weights_only."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise CheckpointNotFoundError(f'{path}: is a folder, not a checkpoint file')
    if not os.path.isfile(path):
        raise CheckpointNotFoundError(f'{path}: checkpoint not found')
    obj = _read_safetensors(path) if is_safetensors(path) else torch_load(path)
    return Checkpoint(select_state_dict(obj, path, param_key), description_of(obj, path), weights_entry(obj, param_key))


def weights_entry(obj: object, param_key: Optional[str] = None) -> Optional[str]:
    """The key of a loaded checkpoint holding the weights: ``param_key`` when present, else the first of
    WRAPPER_KEYS (EMA first); None when the weights are the checkpoint itself."""
    keys = ((param_key,) if param_key else ()) + WRAPPER_KEYS
    return next((k for k in keys if isinstance(obj, dict) and isinstance(obj.get(k), dict)), None)


def is_safetensors(path: str) -> bool:
    """Whether ``path`` is to be read as safetensors: its name ends with .safetensors, or its first bytes are a
    safetensors header (an 8-byte length, then JSON), which neither PyTorch format (zip, pickle) starts with."""
    if path.lower().endswith(SAFETENSORS_SUFFIX):
        return True
    with open(path, 'rb') as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b'{' and not head.startswith(b'PK')


def load_error_reason(err: Exception) -> str:
    """Why torch.load(weights_only=True) (or safetensors) failed, in a few whole words: torch's own messages run to
    several paragraphs."""
    text = str(err).strip()
    refused = re.search(r'GLOBAL ([\w.]+)', text)
    if refused:
        return f'it holds a pickled Python object ({refused.group(1)}); only tensors and plain data are loaded'
    if 'central directory' in text or isinstance(err, EOFError):
        return 'the file is empty, truncated or corrupted'
    first = text.splitlines()[0].split('. ')[0] if text else ''
    return f'{type(err).__name__}: {first}' if first else type(err).__name__


def _read_safetensors(path: str) -> dict:
    """Every tensor of a safetensors file; the header's network description, when present, under DESCRIPTION_KEY."""
    try:
        with safe_open(path, framework='pt', device='cpu') as f:
            obj = {k: f.get_tensor(k) for k in f.keys()}
            header = f.metadata() or {}
    except Exception as err:  # SafetensorError, OSError, or a header that is not JSON
        raise CheckpointError(f'{path}: not a readable safetensors file ({load_error_reason(err)})') from None
    if DESCRIPTION_KEY in header:
        obj[DESCRIPTION_KEY] = _parse_description(header[DESCRIPTION_KEY].encode(), path)
    return obj


def _parse_description(data: bytes, label: str) -> dict:
    try:
        description = json.loads(data.decode())
    except (UnicodeDecodeError, ValueError):
        description = None
    if not isinstance(description, dict):
        raise CheckpointError(f'{label}: its {DESCRIPTION_KEY!r} entry is not a JSON object of RAMiT arguments')
    return description


def description_of(obj: object, label: str = 'checkpoint') -> dict:
    """The network description stored in a loaded checkpoint (RAMiT(...) arguments), or {}: a dict beside the
    weights, or the JSON tensor write_safetensors adds (all that reaches spandrel, which drops file headers)."""
    description = obj.get(DESCRIPTION_KEY) if isinstance(obj, dict) else None
    if isinstance(description, torch.Tensor):
        description = _parse_description(description.detach().cpu().to(torch.uint8).numpy().tobytes(), label)
    if not isinstance(description, dict):
        return {}
    # JSON has no tuples: depths and num_heads come back as lists.
    return {k: tuple(v) if isinstance(v, list) else v for k, v in description.items() if k in ARGUMENT_KEYS}


def select_state_dict(obj: object, label: str = 'checkpoint', param_key: Optional[str] = None) -> StateDict:
    """The RAMiT weights in a loaded checkpoint: ``obj[param_key]`` when given and present, else the first of
    WRAPPER_KEYS (EMA first) or ``obj`` itself; DDP/model prefixes such as 'module.' and the network description
    (DESCRIPTION_KEY) are stripped."""
    if isinstance(obj, dict):
        entry = weights_entry(obj, param_key)
        obj = obj[entry] if entry else obj
        obj = {k: v for k, v in obj.items() if k != DESCRIPTION_KEY}
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f'{label}: no state dict of tensors found (expected a raw state dict or one under '
                              f"{', '.join(repr(k) for k in WRAPPER_KEYS)})")
    anchors = [k for k in obj if k.endswith(ANCHOR)]
    if len(anchors) != 1:
        raise CheckpointError(f'{label}: not a RAMiT checkpoint (no unique {ANCHOR!r} key)')
    prefix = anchors[0][:-len(ANCHOR)]
    return {k[len(prefix):]: v for k, v in obj.items() if k.startswith(prefix)}


def unusable_weights(sd: StateDict, label: str, expected: Optional[StateDict] = None) -> Optional[str]:
    """Why ``sd`` cannot be used as weights, or None: a tensor of integers or booleans where the network (or, without
    ``expected``, any RAMiT network: every weight but the position index) has floating-point values, or NaN/inf."""
    def wants_float(key: str) -> bool:
        if expected is not None:
            return key in expected and expected[key].is_floating_point()
        return not key.endswith('relative_position_index')

    integral = [k for k, t in sd.items() if wants_float(k) and not t.is_floating_point()]
    if integral:
        return (f'{label}: {len(integral)} tensor(s) hold {str(sd[integral[0]].dtype).replace("torch.", "")} values '
                f'where RAMiT has floating-point weights (e.g. {integral[0]}): a quantised or damaged checkpoint')
    bad = [k for k, t in sd.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        return (f'{label}: {len(bad)} tensor(s) hold NaN or inf values (e.g. {bad[0]}): a damaged or diverged '
                'checkpoint')
    return None


def check_weights(sd: StateDict, label: str, expected: Optional[StateDict] = None) -> None:
    """CheckpointError with ``unusable_weights``' reason, if any."""
    reason = unusable_weights(sd, label, expected)
    if reason:
        raise CheckpointError(reason)


# ------------------------------------------------------------------------------------------------------ writing
def save_torch(obj: object, path: Union[str, os.PathLike]) -> None:
    """torch.save to a hidden temporary file beside ``path``, then rename: an interrupted save leaves ``path`` as it
    was. Serialised in memory first: torch's zip writer turns a failed write (a full disk) into a RuntimeError
    without its cause, a plain file write reports ENOSPC, which becomes a one-line error naming ``path``."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_output(path) as tmp, open(tmp, 'wb') as f:
        f.write(buffer.getbuffer())


def network_description(net: nn.Module) -> dict:
    """What is saved beside a network's weights: its hyper-parameters and variant, task and scale."""
    return {k: net.hparams[k] for k in ARGUMENT_KEYS}


def write_safetensors(path: Union[str, os.PathLike], state_dict: StateDict, description: dict) -> None:
    """Write ``state_dict`` and the network ``description`` as one safetensors file, atomically.

    The description is JSON in the header's DESCRIPTION_KEY and, because spandrel (chaiNNer, ComfyUI) hands
    architectures only the tensors, also a uint8 tensor of that key, which every reader here drops.
    """
    text = json.dumps(description)
    # clone: safetensors refuses tensors that share memory, as views of one buffer would.
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in state_dict.items()}
    tensors[DESCRIPTION_KEY] = torch.frombuffer(bytearray(text.encode()), dtype=torch.uint8)
    with atomic_output(path) as tmp:
        save_file(tensors, tmp, metadata={'format': 'pt', DESCRIPTION_KEY: text})


# ------------------------------------------------------------------------------------------ inferring the network
def candidate_tasks(sd: StateDict, description: Optional[dict] = None) -> Tuple[str, ...]:
    """The tasks a state dict can be: its description's task, else what channels and scale allow."""
    if (description or {}).get('task') in TASKS:
        return (description['task'],)
    in_chans = sd[ANCHOR].shape[1]
    if _upscale(sd) > 1:
        return ('sr',)
    return ('graydn',) if in_chans == 1 else ('dn', 'lle', 'dr')


def infer_arguments(sd: StateDict, description: Optional[dict] = None, task: Optional[str] = None,
                    label: str = 'checkpoint') -> dict:
    """``RAMiT(**arguments)`` (variant, task, upscale and the hyper-parameters that differ from the variant's) that
    rebuild the network of ``sd``; CheckpointError when the task is ambiguous or nothing fits.

    The variant is the description's, else the published variant needing the fewest overrides, so published
    checkpoints come back as exactly their variant. ``task`` settles dn/lle/dr, which have identical shapes.
    """
    description = description or {}
    tasks = candidate_tasks(sd, description)
    if task is None and len(tasks) > 1:
        raise CheckpointError(f'{label}: a scale-1 checkpoint can be any of {"/".join(tasks)} (same shapes); '
                              'the task must be given')
    task = task or tasks[0]
    try:
        shapes = _shape_facts(sd)
    except (KeyError, IndexError, ZeroDivisionError) as err:
        raise CheckpointError(f'{label}: not a RAMiT network this package can build (no {err})') from None
    found, error = {}, None
    for variant in VARIANTS:
        try:
            found[variant] = _arguments_for(variant, task, shapes, description)
        except ValueError as err:  # resolve_hparams' checks, or shapes no hyper-parameter reproduces
            error = error or err
    if not found:
        raise CheckpointError(f'{label}: not a RAMiT network this package can build ({error})')
    preferred = description.get('variant')
    return found[preferred] if preferred in found else min(found.values(), key=len)


def describe_state_dict(sd: StateDict, description: Optional[dict] = None) -> str:
    """One line such as "RAMiT-1 x4 SR (3 channels)" for what a state dict looks like."""
    tasks = candidate_tasks(sd, description)
    arguments = infer_arguments(sd, description, tasks[0])
    if len(tasks) == 1:
        return describe(arguments)
    overrides = describe(arguments).partition(' with ')[2]
    return (f"{arguments['variant']} scale-1 restoration ({sd[ANCHOR].shape[1]} channels; one of {'/'.join(tasks)})"
            + (f' with {overrides}' if overrides else ''))


def _upscale(sd: StateDict) -> int:
    return math.isqrt(sd['to_target.conv.weight'].shape[0] // sd[ANCHOR].shape[1])


def _first(sd: StateDict, suffix: str) -> Optional[torch.Tensor]:
    """The first tensor (in stage order) whose key ends with ``suffix``, or None."""
    return next((v for k, v in sd.items() if k.endswith(suffix)), None)


def _heads(sd: StateDict, stage: int) -> Tuple[int, int]:
    """(SP-SA heads, CH-SA heads) of a stage, from the logit scales' shapes."""
    prefix = f'stage{stage}.blocks.block0.'
    return tuple(sd[f'{prefix}{part}.logit_scale'].shape[0] if f'{prefix}{part}.logit_scale' in sd else 0
                 for part in ('sp_attn', 'ch_attn'))


def _shape_facts(sd: StateDict) -> dict:
    """Everything the shapes and keys of a state dict fix, for ``_arguments_for`` to turn into hyper-parameters."""
    dim, in_chans = (int(n) for n in sd[ANCHOR].shape[:2])
    depths = tuple(len({k.split('.')[2] for k in sd if k.startswith(f'stage{i}.blocks.')}) for i in range(1, 5))
    heads = [_heads(sd, i) for i in range(1, 5)]
    table = _first(sd, 'sp_attn.relative_position_bias_table')
    fused = dim + dim // 4 + dim // 16
    facts = dict(dim=dim, in_chans=in_chans, upscale=_upscale(sd), depths=depths,
                 num_heads=tuple(sp + ch for sp, ch in heads), ch_heads=tuple(ch for _, ch in heads),
                 qkv_bias='stage1.blocks.block0.qkv_proj.qkv.bias' in sd,
                 hidden=int(sd['stage1.blocks.block0.ffn.hidden.weight'].shape[0]),
                 mv_ver=2 if 'stage1.blocks.block0.mobivari.exp_conv.weight' in sd else 1,
                 tail_mv=len({k.split('.')[2] for k in sd if k.startswith('to_target.mobivari.')}),
                 # (2 ws - 1)^2 rows; without any SP-SA head the window size shows nowhere.
                 window_size=(math.isqrt(table.shape[0]) + 1) // 2 if table is not None else None)
    if facts['mv_ver'] == 2:
        # (input channels, expanded channels, groups) of the MobiVari v2 expansions: blocks, tail and downsizing
        # use exp_factor/expand_groups, bottleneck and H-RAMi the fuse_* pair.
        def expansion(key: str, width: int) -> Tuple[int, int, int]:
            weight = sd[f'{key}.exp_conv.weight']
            return width, int(weight.shape[0]), width // int(weight.shape[1])

        facts['expansions'] = [expansion('stage1.blocks.block0.mobivari', dim), expansion('down1.reduction', 4 * dim)]
        facts['fuse_expansions'] = [expansion('bottleneck.mobivari', fused),
                                    expansion('attn_mix.mobivari', fused + dim)]
    return facts


def _solve(default: float, bounds: Sequence[Tuple[float, float]], fits: Callable[[float], bool], name: str) -> float:
    """``default`` if it reproduces the shapes, else the value with the fewest decimals in every [low, high) of
    ``bounds`` that does (1.7 rather than 1.6757); ValueError naming ``name`` when there is none."""
    low, high = max(b[0] for b in bounds), min(b[1] for b in bounds)
    candidates = [math.ceil(round(low * 10 ** d, 9)) / 10 ** d for d in range(7)] + [(low + high) / 2]
    for value in (default, *candidates):
        if fits(value):
            return value
    raise ValueError(f"no {name} reproduces the checkpoint's shapes")


def _solve_expansion(expansions: List[Tuple[int, int, int]], default: Tuple[float, int], name: str
                     ) -> Tuple[float, int]:
    """(exp_factor, expand_groups) whose expanded_channels give every (width, hidden, groups) of ``expansions``."""
    groups = {g for _, _, g in expansions}
    if len(groups) != 1:
        raise ValueError(f'{name}: the expansions disagree on their groups {sorted(groups)}')
    g = groups.pop()
    # expanded_channels rounds int(width * e) up past the next multiple of g, so int(width * e) is in [h - g, h).
    bounds = [((h - g) / w, h / w) for w, h, _ in expansions]
    factor = _solve(default[0], bounds, lambda e: all(expanded_channels(w, e, g) == h for w, h, _ in expansions),
                    name)
    return factor, g


def _arguments_for(variant: str, task: str, facts: dict, description: dict) -> dict:
    """RAMiT(...) arguments with ``variant`` as the base that reproduce ``facts``; ValueError if none does."""
    base = resolve_hparams(variant, task, facts['upscale'])
    want = {k: facts[k] for k in ('dim', 'depths', 'num_heads', 'qkv_bias', 'mv_ver', 'tail_mv', 'in_chans')}
    want['window_size'] = facts['window_size'] or description.get('window_size', base['window_size'])
    # int(n * ratio) CH-SA heads of n per stage; int(dim * hidden_ratio) FFN channels.
    heads = list(zip(facts['ch_heads'], facts['num_heads']))
    want['chsa_head_ratio'] = _solve(base['chsa_head_ratio'], [(c / n, (c + 1) / n) for c, n in heads],
                                     lambda r: all(int(n * r) == c for c, n in heads), 'chsa_head_ratio')
    dim, hidden = facts['dim'], facts['hidden']
    want['hidden_ratio'] = _solve(base['hidden_ratio'], [(hidden / dim, (hidden + 1) / dim)],
                                  lambda r: int(dim * r) == hidden, 'hidden_ratio')
    if facts['mv_ver'] == 2:
        want['exp_factor'], want['expand_groups'] = _solve_expansion(
            facts['expansions'], (base['exp_factor'], base['expand_groups']), 'exp_factor')
        spec = VARIANTS[variant]
        fuse_default = (spec.get('fuse_exp_factor', want['exp_factor']),
                        spec.get('fuse_expand_groups', want['expand_groups']))
        want['fuse_exp_factor'], want['fuse_expand_groups'] = _solve_expansion(
            facts['fuse_expansions'], fuse_default, 'fuse_exp_factor')
    want.update({k: description[k] for k in HIDDEN_KEYS if k in description})
    hparams = resolve_hparams(variant, task, facts['upscale'], **want)  # ValueError: this variant cannot carry them
    return minimal_arguments(hparams)


# ------------------------------------------------------------------------------------------------------ loading
def mismatched_keys(own: StateDict, theirs: StateDict) -> List[str]:
    """Human-readable key/shape differences between a network's state dict and a checkpoint's, shapes first."""
    problems = [f'{k} missing' for k in own if k not in theirs]
    problems += [f'{k} unexpected' for k in theirs if k not in own]
    problems += [f'{k} {list(theirs[k].shape)} vs network {list(own[k].shape)}'
                 for k in own if k in theirs and theirs[k].shape != own[k].shape]
    # Shape differences are the most telling (scale, channels), so report them first.
    return sorted(problems, key=lambda p: ' vs network ' not in p)


def load_weights(net: nn.Module, source: Source, exclude: Iterable[str] = (), strict: bool = True,
                 param_key: Optional[str] = None, label: Optional[str] = None) -> nn.Module:
    """Load a RAMiT checkpoint (a file or a loaded dict: raw, BasicSR params/params_ema, DDP, mmengine) into ``net``.

    ``param_key`` picks BasicSR's 'params'/'params_ema' when the file has it (else EMA first). Keys starting with a
    prefix in ``exclude`` are skipped on both sides (e.g. 'to_target.' for a warm start). With ``strict``, any other
    missing, unexpected or mis-shaped key raises CheckpointMismatchError naming ``label`` (default: the file);
    without, such keys are left as they are. Integer or NaN/inf weights are refused either way. Returns ``net``.
    """
    if isinstance(source, dict):
        label = label or 'state dict'
        full, description = select_state_dict(source, label, param_key), description_of(source, label)
    else:
        label = label or os.fspath(source)
        full, description, _ = read_checkpoint(source, param_key)
    exclude = tuple(exclude)
    sd = {k: v for k, v in full.items() if not k.startswith(exclude)} if exclude else full
    own = {k: v for k, v in net.state_dict().items() if not k.startswith(exclude)} if exclude else net.state_dict()
    problems = mismatched_keys(own, sd)
    if problems and strict:
        raise _mismatch(net, full, description, problems, label)
    if not strict:
        sd = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    check_weights(sd, label, own)
    net.load_state_dict(sd, strict=strict and not exclude)
    return net


def check_fit(arguments: dict, sd: StateDict, description: dict, label: str) -> None:
    """CheckpointMismatchError (the same words load_weights uses) when the network of ``arguments`` cannot hold
    ``sd``; the network is made on the meta device, so nothing is allocated or computed."""
    with torch.device('meta'):
        net = RAMiT(**arguments)
    problems = mismatched_keys(net.state_dict(), sd)
    if problems:
        raise _mismatch(net, sd, description, problems, label)


def _mismatch(net: nn.Module, sd: StateDict, description: dict, problems: List[str], label: str
              ) -> CheckpointMismatchError:
    """The one-line error for a checkpoint that does not fit ``net``: what it looks like, what the network is."""
    try:
        looks = describe_state_dict(sd, description)
    except (KeyError, IndexError, ValueError):
        looks = 'a network with other parts'
    network = net.describe() if hasattr(net, 'hparams') else type(net).__name__
    return CheckpointMismatchError(f'{label}: checkpoint does not fit: it looks like {looks}; the network is '
                                   f'{network} ({len(problems)} mismatched keys, e.g. {problems[0]})')
