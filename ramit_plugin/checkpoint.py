"""RAMiT checkpoints: read every form users have, infer the network they hold, load them with one-line errors.

The one checkpoint API of the plugin, used by BasicSR (RAMiTModel, the option checks), mmengine (RAMiTRestorer's
``pretrained``, ``ramit mm-test``) and inference (``ramit infer/export``):

- ``read_checkpoint(path, param_key)`` -> (state dict, metadata): the file's weights, unwrapped, and what the file
  says about the network (``{}`` when it says nothing, as the authors' raw files); PyTorch files are read with
  ``weights_only``, safetensors files (``.safetensors``, or any file with a safetensors header) without pickle;
- ``infer_config(state_dict, metadata, task)`` -> the ``RAMiT(**config)`` arguments that rebuild the network,
  custom sizes included: what shapes show comes from the shapes, the rest from metadata or the task's defaults;
- ``load_checkpoint(net, source, ...)`` -> ``net`` with the weights loaded;
- ``write_safetensors(path, state_dict, metadata)``: weights plus network description as one safetensors file.
"""
import json
import math
import os
import re
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file

from .archs.ramit_arch import HYPER_PARAMETERS, TASKS, VARIANTS, describe_config, expanded_channels, resolve_config
from .errors import RamitError
from .fileio import atomic_output

StateDict = Dict[str, torch.Tensor]
Source = Union[str, os.PathLike, dict]
# Where the weights sit in wrapped checkpoints, EMA first: BasicSR keeps the EMA weights beside the raw ones,
# mmengine uses 'state_dict'. An explicit param_key (BasicSR's param_key_g) is taken first when the file has it.
WRAPPER_KEYS = ('params_ema', 'params', 'state_dict', 'model')
ANCHOR = 'shallow.conv.weight'
# Key of the network description saved with the weights: a dict of RAMiT(...) arguments beside them in RAMiTModel's
# .pth files; JSON in the header and in a uint8 tensor of that name in safetensors files (write_safetensors).
METADATA_KEY = 'ramit_config'
SAFETENSORS_SUFFIX = '.safetensors'
CONFIG_KEYS = ('variant', 'task', 'upscale') + HYPER_PARAMETERS
# Not visible in any shape: taken from the metadata when the file has it, else the task's defaults.
HIDDEN_KEYS = ('helper', 'img_norm')
TRAINING_ONLY = ('attn_drop', 'proj_drop', 'drop_path')


class CheckpointError(RamitError, ValueError):
    """A checkpoint that cannot be read, is not RAMiT, or does not fit; the message names the file."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint path that does not exist."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint whose keys or shapes do not fit the network it is loaded into."""


# ------------------------------------------------------------------------------------------------------ reading
def read_checkpoint(path: Union[str, os.PathLike], param_key: Optional[str] = None) -> Tuple[StateDict, dict]:
    """(bare RAMiT state dict, metadata or {}) of a checkpoint file, loaded on the CPU: safetensors without pickle,
    PyTorch files with weights_only."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointNotFoundError(f'{path}: checkpoint not found')
    obj = _read_safetensors(path) if is_safetensors(path) else _read_torch(path)
    return select_state_dict(obj, path, param_key), checkpoint_metadata(obj, path)


def is_safetensors(path: str) -> bool:
    """Whether ``path`` is to be read as safetensors: its name ends with .safetensors, or its first bytes are a
    safetensors header (an 8-byte length, then JSON), which neither PyTorch format (zip, pickle) starts with."""
    if path.lower().endswith(SAFETENSORS_SUFFIX):
        return True
    with open(path, 'rb') as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b'{' and not head.startswith(b'PK')


def _read_torch(path: str) -> object:
    from .mm.runtime import allow_mmengine_checkpoints

    # mmengine's Runner checkpoints also hold numpy values and HistoryBuffers: allowed as types, weights_only stays.
    allow_mmengine_checkpoints()
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f'{path}: not a readable PyTorch checkpoint ({load_error_reason(err)})') from None


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
    """Every tensor of a safetensors file; the header's network description, when present, under METADATA_KEY."""
    try:
        with safe_open(path, framework='pt', device='cpu') as f:
            obj = {k: f.get_tensor(k) for k in f.keys()}
            header = f.metadata() or {}
    except Exception as err:  # SafetensorError, OSError, or a header that is not JSON
        raise CheckpointError(f'{path}: not a readable safetensors file ({load_error_reason(err)})') from None
    if METADATA_KEY in header:
        obj[METADATA_KEY] = _parse_metadata(header[METADATA_KEY].encode(), path)
    return obj


def _parse_metadata(data: bytes, label: str) -> dict:
    try:
        meta = json.loads(data.decode())
    except (UnicodeDecodeError, ValueError):
        meta = None
    if not isinstance(meta, dict):
        raise CheckpointError(f'{label}: its {METADATA_KEY!r} metadata is not a JSON object of RAMiT arguments')
    return meta


def checkpoint_metadata(obj: object, label: str = 'checkpoint') -> dict:
    """The network description stored in a loaded checkpoint (RAMiT(...) arguments), or {}: a dict beside the
    weights, or the JSON tensor write_safetensors adds (all that reaches spandrel, which drops file headers)."""
    meta = obj.get(METADATA_KEY) if isinstance(obj, dict) else None
    if isinstance(meta, torch.Tensor):
        meta = _parse_metadata(meta.detach().cpu().to(torch.uint8).numpy().tobytes(), label)
    if not isinstance(meta, dict):
        return {}
    # JSON has no tuples: depths and num_heads come back as lists.
    return {k: tuple(v) if isinstance(v, list) else v for k, v in meta.items() if k in CONFIG_KEYS}


def select_state_dict(obj: object, label: str = 'checkpoint', param_key: Optional[str] = None) -> StateDict:
    """The RAMiT weights in a loaded checkpoint: ``obj[param_key]`` when given and present, else the first of
    WRAPPER_KEYS (EMA first) or ``obj`` itself; DDP/model prefixes such as 'module.' and the network description
    (METADATA_KEY) are stripped."""
    if isinstance(obj, dict):
        keys = ((param_key,) if param_key else ()) + WRAPPER_KEYS
        obj = next((obj[k] for k in keys if isinstance(obj.get(k), dict)), obj)
        obj = {k: v for k, v in obj.items() if k != METADATA_KEY}
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f'{label}: no state dict of tensors found (expected a raw state dict or one under '
                              f"{', '.join(repr(k) for k in WRAPPER_KEYS)})")
    anchors = [k for k in obj if k.endswith(ANCHOR)]
    if len(anchors) != 1:
        raise CheckpointError(f'{label}: not a RAMiT checkpoint (no unique {ANCHOR!r} key)')
    prefix = anchors[0][:-len(ANCHOR)]
    return {k[len(prefix):]: v for k, v in obj.items() if k.startswith(prefix)}


def config_metadata(net: nn.Module) -> dict:
    """What RAMiTModel stores under METADATA_KEY: the RAMiT(...) arguments of ``net``."""
    return {k: net.config[k] for k in CONFIG_KEYS}


def write_safetensors(path: Union[str, os.PathLike], state_dict: StateDict, metadata: dict) -> None:
    """Write ``state_dict`` and the network description ``metadata`` (config_metadata) as one safetensors file,
    atomically (a hidden temporary file renamed into place).

    The description is JSON in the header's METADATA_KEY and, because spandrel (chaiNNer, ComfyUI) hands
    architectures only the tensors, also a uint8 tensor of that key, which every reader here drops.
    """
    text = json.dumps(metadata)
    # clone: safetensors refuses tensors that share memory, as views of one buffer would.
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in state_dict.items()}
    tensors[METADATA_KEY] = torch.frombuffer(bytearray(text.encode()), dtype=torch.uint8)
    with atomic_output(path) as tmp:
        save_file(tensors, tmp, metadata={'format': 'pt', METADATA_KEY: text})


# ------------------------------------------------------------------------------------------ inferring the network
def candidate_tasks(sd: StateDict, metadata: Optional[dict] = None) -> Tuple[str, ...]:
    """The tasks a state dict can be: its metadata's task, else what channels and scale allow."""
    if (metadata or {}).get('task') in TASKS:
        return (metadata['task'],)
    in_chans = sd[ANCHOR].shape[1]
    if _upscale(sd) > 1:
        return ('sr',)
    return ('graydn',) if in_chans == 1 else ('dn', 'lle', 'dr')


def infer_config(sd: StateDict, metadata: Optional[dict] = None, task: Optional[str] = None,
                 label: str = 'checkpoint') -> dict:
    """``RAMiT(**config)`` arguments (variant, task, upscale and the hyper-parameters that differ from the
    variant's) that rebuild the network of ``sd``; CheckpointError when the task is ambiguous or nothing fits.

    The variant is the metadata's, else the published variant needing the fewest overrides, so published
    checkpoints come back as exactly their variant. ``task`` settles dn/lle/dr, which have identical shapes.
    """
    metadata = metadata or {}
    tasks = candidate_tasks(sd, metadata)
    if task is None and len(tasks) > 1:
        raise CheckpointError(f'{label}: a scale-1 checkpoint can be any of {"/".join(tasks)} (same shapes); '
                              'the task must be given')
    task = task or tasks[0]
    try:
        shapes = _shape_facts(sd)
    except (KeyError, IndexError, ZeroDivisionError) as err:
        raise CheckpointError(f'{label}: not a RAMiT network this package can build (no {err})') from None
    configs, error = {}, None
    for variant in VARIANTS:
        try:
            configs[variant] = _config_for(variant, task, shapes, metadata)
        except ValueError as err:  # resolve_config's checks, or shapes no hyper-parameter reproduces
            error = error or err
    if not configs:
        raise CheckpointError(f'{label}: not a RAMiT network this package can build ({error})')
    preferred = metadata.get('variant')
    return configs[preferred] if preferred in configs else min(configs.values(), key=len)


def describe(config: dict) -> str:
    """One line such as "RAMiT-1 x2 SR (3 channels)", plus the overrides of a custom network."""
    return describe_config(resolve_config(**config)) + _overrides_text(config)


def describe_state_dict(sd: StateDict, metadata: Optional[dict] = None) -> str:
    """One line such as "RAMiT-1 x4 SR (3 channels)" for what a state dict looks like."""
    tasks = candidate_tasks(sd, metadata)
    config = infer_config(sd, metadata, tasks[0])
    if len(tasks) == 1:
        return describe(config)
    return (f"{config['variant']} scale-1 restoration ({sd[ANCHOR].shape[1]} channels; one of {'/'.join(tasks)})"
            + _overrides_text(config))


def _overrides_text(config: dict) -> str:
    """' with dim=16, depths=(1, 1, 1, 1)' for the hyper-parameters a config sets, '' for none."""
    extra = ', '.join(f'{k}={config[k]}' for k in HYPER_PARAMETERS if k in config)
    return f' with {extra}' if extra else ''


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
    """Everything the shapes and keys of a state dict fix, for ``_config_for`` to turn into hyper-parameters."""
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


def _config_for(variant: str, task: str, facts: dict, metadata: dict) -> dict:
    """RAMiT(...) arguments with ``variant`` as the base that reproduce ``facts``; ValueError if none does."""
    base = resolve_config(variant, task, facts['upscale'])
    want = {k: facts[k] for k in ('dim', 'depths', 'num_heads', 'qkv_bias', 'mv_ver', 'tail_mv', 'in_chans')}
    want['window_size'] = facts['window_size'] or metadata.get('window_size', base['window_size'])
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
    want.update({k: metadata[k] for k in HIDDEN_KEYS if k in metadata})
    arguments = _arguments(variant, task, facts['upscale'], want)
    resolve_config(**arguments)  # ValueError when this variant cannot carry these values
    return arguments


def _arguments(variant: str, task: str, upscale: int, want: dict) -> dict:
    """RAMiT(...) arguments with the fewest overrides that give the hyper-parameters ``want``."""
    base = resolve_config(variant, task, upscale)
    overrides = {k: v for k, v in want.items() if not k.startswith('fuse_') and v != base[k]}
    for key in ('fuse_exp_factor', 'fuse_expand_groups'):
        # resolve_config lets fuse_* follow exp_* unless the variant sets them.
        follows = VARIANTS[variant].get(key, overrides.get(key[len('fuse_'):], base[key]))
        if key in want and want[key] != follows:
            overrides[key] = want[key]
    return dict(variant=variant, task=task, upscale=upscale, **overrides)


# ------------------------------------------------------------------------------------------------------ loading
def mismatched_keys(own: StateDict, theirs: StateDict) -> List[str]:
    """Human-readable key/shape differences between a network's state dict and a checkpoint's, shapes first."""
    problems = [f'{k} missing' for k in own if k not in theirs]
    problems += [f'{k} unexpected' for k in theirs if k not in own]
    problems += [f'{k} {list(theirs[k].shape)} vs network {list(own[k].shape)}'
                 for k in own if k in theirs and theirs[k].shape != own[k].shape]
    # Shape differences are the most telling (scale, channels), so report them first.
    return sorted(problems, key=lambda p: ' vs network ' not in p)


def load_checkpoint(net: nn.Module, source: Source, exclude: Iterable[str] = (), strict: bool = True,
                    param_key: Optional[str] = None, label: Optional[str] = None) -> nn.Module:
    """Load a RAMiT checkpoint (a file or a loaded dict: raw, BasicSR params/params_ema, DDP, mmengine) into ``net``.

    ``param_key`` picks BasicSR's 'params'/'params_ema' when the file has it (else EMA first). Keys starting with a
    prefix in ``exclude`` are skipped on both sides (e.g. 'to_target.' for a warm start). With ``strict``, any other
    missing, unexpected or mis-shaped key raises CheckpointMismatchError naming ``label`` (default: the file);
    without, such keys are left as they are. Returns ``net``.
    """
    if isinstance(source, dict):
        label = label or 'state dict'
        full, metadata = select_state_dict(source, label, param_key), checkpoint_metadata(source, label)
    else:
        label = label or os.fspath(source)
        full, metadata = read_checkpoint(source, param_key)
    exclude = tuple(exclude)
    sd = {k: v for k, v in full.items() if not k.startswith(exclude)} if exclude else full
    own = {k: v for k, v in net.state_dict().items() if not k.startswith(exclude)} if exclude else net.state_dict()
    problems = mismatched_keys(own, sd)
    if problems and strict:
        try:
            looks = describe_state_dict(full, metadata)
        except (KeyError, IndexError, ValueError):
            looks = 'a network with other parts'
        network = describe(network_config(net)) if hasattr(net, 'config') else type(net).__name__
        raise CheckpointMismatchError(f'{label}: checkpoint does not fit: it looks like {looks}; the network is '
                                      f'{network} ({len(problems)} mismatched keys, e.g. {problems[0]})')
    if not strict:
        sd = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    net.load_state_dict(sd, strict=strict and not exclude)
    return net


def network_config(net: nn.Module) -> dict:
    """The RAMiT(...) arguments of a built network: variant, task, upscale and its overrides of the variant."""
    config = net.config
    want = {k: config[k] for k in HYPER_PARAMETERS if k not in TRAINING_ONLY}
    return _arguments(config['variant'], config['task'], config['upscale'], want)
