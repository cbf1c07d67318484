"""torch.compile for RAMiT wherever it runs (`ramit infer/bench --compile`, `train: compile` in BasicSR and mmengine).

One place decides the mode (CUDA graphs where shapes are fixed), keeps Inductor's kernel cache across runs and
reports cache hits. Callers keep the plain module for checkpoints, so saved keys never carry ``_orig_mod.``.
"""
import os
from typing import Mapping, Optional, Union

import torch
import torch.nn as nn

from .errors import OptionError
from .hparams import COMPILE_MODES as MODES
from .hub import cache_dir

# Inductor modes that record CUDA graphs: each replay needs the shapes it was recorded with.
CUDA_GRAPH_MODES = ('reduce-overhead', 'max-autotune')
CACHE_ENV = 'TORCHINDUCTOR_CACHE_DIR'


def inductor_cache_dir() -> str:
    """Inductor's kernel cache: $TORCHINDUCTOR_CACHE_DIR, else <ramit cache>/inductor, which survives /tmp clean-ups.

    Set in the environment before the first compilation, where Inductor reads it; a second run of the same
    network and shapes then loads its kernels instead of compiling them (minutes on a CPU).
    """
    if not os.environ.get(CACHE_ENV):
        os.environ[CACHE_ENV] = str(cache_dir() / 'inductor')
    return os.environ[CACHE_ENV]


def resolve_mode(mode: str, device: Union[str, torch.device], static_shapes: bool) -> str:
    """The Inductor mode for ``mode``: 'auto' means CUDA graphs on CUDA when shapes are fixed, else 'default'."""
    if mode not in MODES:
        raise OptionError(f"compile mode {mode!r} is not supported; valid: {', '.join(MODES)}")
    if mode != 'auto':
        return mode
    return 'reduce-overhead' if torch.device(device).type == 'cuda' and static_shapes else 'default'


def compile_network(module: nn.Module, device: Union[str, torch.device], mode: str = 'auto',
                    static_shapes: bool = True, fullgraph: bool = True) -> nn.Module:
    """``torch.compile(module)`` with the resolved mode and the persistent cache; ``module`` itself is unchanged.

    ``fullgraph`` holds for RAMiT itself (one graph, no breaks); DDP-wrapped modules need False (graph split at
    gradient buckets). ``static_shapes``: compile per shape (training patches, same-size images) rather than
    with symbolic sizes.
    """
    inductor_cache_dir()
    return torch.compile(module, mode=resolve_mode(mode, device, static_shapes), fullgraph=fullgraph,
                         dynamic=False if static_shapes else None)


class CompiledTraining:
    """A training forward through torch.compile: shapes fixed per patch size, each step marked for CUDA graphs.

    Under DDP 'auto' means Inductor's default mode: CUDA graphs around DDP's gradient all-reduce are not something
    we have measured, and the graph is split at gradient buckets there (no fullgraph). Not an nn.Module, so a
    model holding it gains no '_orig_mod.' keys in its state dict.
    """

    def __init__(self, module: nn.Module, device: Union[str, torch.device], mode: str, distributed: bool) -> None:
        self.mode = resolve_mode('default' if distributed and mode == 'auto' else mode, device, static_shapes=True)
        self.label = mode if mode == self.mode else f'{mode}: {self.mode}'  # what the logs say
        self.compiled = compile_network(module, device, self.mode, fullgraph=not distributed)
        # Each step's start is then marked: the previous step's graph outputs may be overwritten.
        self.cuda_graphs = torch.device(device).type == 'cuda' and self.mode in CUDA_GRAPH_MODES

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        return self.compiled(x)


def compile_options(value: Union[None, bool, str, Mapping], option: str) -> Optional[dict]:
    """``train: compile`` as written in an option file -> None (off) or {'mode': ...}; ValueError naming ``option``.

    Accepted: false/true, a mode name, or a mapping {mode: ...}.
    """
    if value in (None, False):
        return None
    if value is True:
        return {'mode': 'auto'}
    mode = value if isinstance(value, str) else value.get('mode', 'auto') if isinstance(value, Mapping) else None
    unknown = sorted(set(value) - {'mode'}) if isinstance(value, Mapping) else []
    if mode not in MODES or unknown:
        raise OptionError(f"{option}: {value!r} is not valid; use true, false, one of {', '.join(MODES)} or "
                          '{mode: <one of those>}')
    return {'mode': mode}


def cache_report() -> str:
    """'N compiled, M loaded from the cache at DIR' from Inductor's counters in this process."""
    from torch._dynamo.utils import counters  # 1.7 s to import: only compiled runs pay it

    inductor = counters['inductor']
    return (f"{inductor['fxgraph_cache_miss']} graph(s) compiled, {inductor['fxgraph_cache_hit']} loaded from the "
            f'cache at {os.environ.get(CACHE_ENV, "(torch default)")}')
