"""Random state for exact resume (BasicSR and mmengine): every generator that shapes training, and per-sample seeds.

A resumed run is the uninterrupted run when (1) the states of Python's ``random``, NumPy's global RNG and torch's
CPU and CUDA generators saved with a checkpoint are restored right before the next training iteration, and (2) the
augmentation of every training sample (crops, flips, noise) depends only on (seed, epoch, position in the epoch),
not on which data-loader worker draws it or how far that worker's stream has advanced: the samplers yield a
``SampleKey`` and the datasets load each sample inside ``seeded(key.seed)``.
Everything here is saved in forms ``torch.load(weights_only=True)`` reads (tensors, ints, tuples).
"""
import contextlib
import random
from typing import Iterator, List, NamedTuple, Optional

import numpy as np
import torch
import torch.distributed as dist


class SampleKey(NamedTuple):
    """What a resumable sampler yields: the dataset index and the seed its augmentation draws from."""

    index: int
    seed: int


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """The seed of the sample at ``position`` (0-based, over all processes) of ``epoch`` in a run seeded ``seed``."""
    words = np.random.SeedSequence([seed % 2**63, epoch, position]).generate_state(2, np.uint32)
    return int(words[0]) << 31 | int(words[1]) >> 1


def capture(cuda: bool = True) -> dict:
    """The state of Python's, NumPy's and torch's global generators (CUDA's too where CUDA is initialised)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {'python': random.getstate(), 'numpy': (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                    cached),
             'torch': torch.get_rng_state()}
    if cuda and torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore(state: dict) -> None:
    """Set the global generators to a ``capture()`` (tensors may come back on any device)."""
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])


@contextlib.contextmanager
def preserved(cuda: bool = False) -> Iterator[None]:
    """Run the block without moving the global generators (CPU ones; CUDA's too if ``cuda``): restored afterwards."""
    saved = capture(cuda)
    try:
        yield
    finally:
        restore(saved)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed Python's, NumPy's and torch's CPU generators with ``seed`` for the block, then put them back."""
    with preserved():
        random.seed(seed)
        np.random.seed(seed % 2**32)
        # Not torch.manual_seed: that reseeds the CUDA generators too, which the model's dropout draws from.
        torch.default_generator.manual_seed(seed)
        yield


def capture_all_ranks(state: Optional[dict] = None) -> List[dict]:
    """capture() (or ``state``) of every process of a distributed run, by rank (a collective call); else [it]."""
    state = capture() if state is None else state
    if not (dist.is_available() and dist.is_initialized()):
        return [state]
    states: List[Optional[dict]] = [None] * dist.get_world_size()
    dist.all_gather_object(states, state)
    return states


def restore_own_rank(states: List[dict]) -> bool:
    """restore() this process's entry of capture_all_ranks(); False (nothing changed) if the world size differs."""
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    if len(states) != world:
        return False
    restore(states[rank])
    return True
