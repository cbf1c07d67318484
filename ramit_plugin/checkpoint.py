"""Read RAMiT checkpoints in the forms users have, and load them with a one-line error when they do not fit."""
import math
import os
from typing import Dict, Iterable, Union

import torch
import torch.nn as nn

from .archs.ramit_arch import VARIANTS, describe_config, expanded_channels

StateDict = Dict[str, torch.Tensor]
# Wrappers in preference order: BasicSR keeps the EMA weights beside the raw ones; mmengine uses 'state_dict'.
WRAPPER_KEYS = ('params_ema', 'params', 'state_dict', 'model')
ANCHOR = 'shallow.conv.weight'


class CheckpointMismatchError(ValueError):
    """A checkpoint whose keys or shapes do not fit the network it is loaded into."""


def read_state_dict(path: Union[str, os.PathLike]) -> StateDict:
    """Load a checkpoint file on the CPU (weights_only) and return the bare RAMiT state dict."""
    return unwrap_state_dict(load_file(path), os.fspath(path))


def load_file(path: Union[str, os.PathLike]) -> object:
    """torch.load on the CPU with weights_only=True; FileNotFoundError / one-line ValueError naming the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # torch raises many types for truncated or foreign files
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f'{path}: not a readable PyTorch checkpoint ({reason[:200]})') from None
    return obj


def unwrap_state_dict(obj: object, source: str = 'checkpoint') -> StateDict:
    """Strip BasicSR/mmengine wrappers (preferring params_ema) and DDP/model prefixes such as 'module.'."""
    if isinstance(obj, dict):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f'{source}: no state dict of tensors found (expected a raw state dict or one under '
                         f"{', '.join(repr(k) for k in WRAPPER_KEYS)})")
    anchors = [k for k in obj if k.endswith(ANCHOR)]
    if len(anchors) != 1:
        raise ValueError(f'{source}: not a RAMiT checkpoint (no unique {ANCHOR!r} key)')
    prefix = anchors[0][:-len(ANCHOR)]
    return {k[len(prefix):]: v for k, v in obj.items() if k.startswith(prefix)}


def _stage_depth(sd: StateDict, stage: int) -> int:
    blocks = {k.split('.')[2] for k in sd if k.startswith(f'stage{stage}.blocks.')}
    return len(blocks)


def infer_architecture(sd: StateDict) -> dict:
    """Variant, scale, channels and candidate tasks that a RAMiT state dict's shapes imply."""
    dim, in_chans = sd['shallow.conv.weight'].shape[:2]
    out_chans = sd['to_target.final_conv.weight'].shape[0]
    upscale = math.isqrt(sd['to_target.conv.weight'].shape[0] // out_chans)
    depths = tuple(_stage_depth(sd, i) for i in range(1, 5))
    mv_ver = 2 if 'bottleneck.mobivari.exp_conv.weight' in sd else 1
    variant = None
    for name, spec in VARIANTS.items():
        if (spec['dim'], tuple(spec['depths']), spec['mv_ver']) != (dim, depths, mv_ver):
            continue
        if mv_ver == 2:
            # The slim variants differ from RAMiT only in the bottleneck's expansion width and groups.
            fused = dim + dim // 4 + dim // 16
            exp = sd['bottleneck.mobivari.exp_conv.weight']
            groups = spec.get('fuse_expand_groups', spec['expand_groups'])
            width = expanded_channels(fused, spec.get('fuse_exp_factor', spec['exp_factor']), groups)
            if (exp.shape[0], fused // exp.shape[1]) != (width, groups):
                continue
        variant = name
    if upscale > 1:
        tasks = ('sr',)
    elif in_chans == 1:
        tasks = ('graydn',)
    else:
        tasks = ('dn', 'lle', 'dr')
    return dict(variant=variant, upscale=upscale, in_chans=int(in_chans), dim=int(dim), depths=depths,
                mv_ver=mv_ver, tasks=tasks)


def describe_state_dict(sd: StateDict) -> str:
    """One line such as "RAMiT-1 x4 SR (3 channels)" for what a state dict looks like."""
    arch = infer_architecture(sd)
    variant = arch['variant'] or f"a custom RAMiT (dim {arch['dim']}, depths {arch['depths']}, MobiVari v{arch['mv_ver']})"
    if len(arch['tasks']) == 1:
        return describe_config(dict(variant=variant, task=arch['tasks'][0], upscale=arch['upscale'],
                                    in_chans=arch['in_chans']))
    return f"{variant} scale-1 restoration ({arch['in_chans']} channels; one of {'/'.join(arch['tasks'])})"


def load_checkpoint(net: nn.Module, source: Union[str, os.PathLike, StateDict],
                    exclude: Iterable[str] = (), strict: bool = True) -> nn.Module:
    """Load a RAMiT checkpoint (raw, BasicSR params/params_ema, DDP 'module.', mmengine) into ``net``.

    Keys starting with a prefix in ``exclude`` are skipped on both sides (e.g. 'to_target.' for a warm start).
    With ``strict``, any other missing, unexpected or mis-shaped key raises CheckpointMismatchError.
    """
    label = 'state dict' if isinstance(source, dict) else os.fspath(source)
    full = unwrap_state_dict(source, label) if isinstance(source, dict) else read_state_dict(source)
    exclude = tuple(exclude)
    sd = {k: v for k, v in full.items() if not k.startswith(exclude)} if exclude else full
    own = {k: v for k, v in net.state_dict().items() if not k.startswith(exclude)} if exclude else net.state_dict()
    problems = _mismatches(own, sd) if strict else []
    if problems:
        try:
            looks = describe_state_dict(full)
        except KeyError:
            looks = 'a network with other parts'
        network = net.describe() if hasattr(net, 'describe') else type(net).__name__
        raise CheckpointMismatchError(f'{label}: checkpoint does not fit: it looks like {looks}; the network is '
                                      f'{network} ({len(problems)} mismatched keys, e.g. {problems[0]})')
    net.load_state_dict(sd, strict=strict and not exclude)
    return net


def _mismatches(own: StateDict, theirs: StateDict) -> list:
    """Human-readable key/shape differences between two state dicts."""
    problems = [f'{k} missing' for k in own if k not in theirs]
    problems += [f'{k} unexpected' for k in theirs if k not in own]
    problems += [f'{k} {list(theirs[k].shape)} vs network {list(own[k].shape)}'
                 for k in own if k in theirs and theirs[k].shape != own[k].shape]
    # Shape differences are the most telling (scale, channels), so report them first.
    return sorted(problems, key=lambda p: ' vs network ' not in p)
