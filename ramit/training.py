"""What both trainers share (BasicSR's RAMiTModel and mmengine's RAMiTRestorer), framework-neutral: the paper's
progressive patches and warm start, the stop on a non-finite loss, the memory a training step needs, and exact
resume (random state and per-sample seeds).

Exact resume: a resumed run is the uninterrupted run when (1) the states of Python's ``random``, NumPy's global RNG
and torch's CPU and CUDA generators saved with a checkpoint are restored right before the next training iteration,
and (2) the augmentation of every training sample (crops, flips, noise) depends only on (seed, epoch, position in
the epoch), not on which data-loader worker draws it: the samplers yield a ``SampleKey`` and the datasets load each
sample inside ``seeded(key.seed)``. Everything saved is in forms ``torch.load(weights_only=True)`` reads.
"""
import contextlib
import functools
import random
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple, TypeVar

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from .errors import OptionError, RunError
from .memory import available_bytes, traced_peak_bytes

Tensor = torch.Tensor
T = TypeVar('T')
# The only part trained during a warm start (x3/x4 from an x2 model): the scale-specific reconstruction.
WARM_START_TRAINED = 'to_target.'


class NonFiniteLossError(RunError, RuntimeError):
    """A loss became NaN or inf: training stops before the optimizer step, no checkpoint is written."""


# ------------------------------------------------------------------------------------------ progressive patches
@dataclass(frozen=True)
class ProgressiveSchedule:
    """Stage k (gt_sizes[k], batch_sizes[k]) runs from iteration iters[k] until the next stage starts.

    The dataloader keeps delivering the largest patch and batch; the trainer crops and subsamples each batch to the
    current stage (as Restormer does), so the frameworks' loops, samplers and resume stay untouched.
    """
    iters: Tuple[int, ...]
    gt_sizes: Tuple[int, ...]
    batch_sizes: Tuple[int, ...]

    @classmethod
    def from_options(cls, prog: Mapping, gt_size: Optional[int], batch_size: Optional[int], scale: int,
                     option: str, limits: Tuple[str, str]) -> 'ProgressiveSchedule':
        """Validate ``prog`` (the option named ``option``) against the delivered patch/batch (OptionError).

        ``limits`` names where ``gt_size`` and ``batch_size`` come from; None checks only the schedule itself.
        """
        def fail(msg: str) -> None:
            raise OptionError(f'{option}: {msg}')

        if not isinstance(prog, Mapping):
            fail('must be a mapping with keys iters, gt_sizes, batch_sizes')
        missing = [k for k in ('iters', 'gt_sizes', 'batch_sizes') if k not in prog]
        unknown = sorted(set(prog) - {'iters', 'gt_sizes', 'batch_sizes'})
        if missing or unknown:
            fail(f"needs keys iters, gt_sizes, batch_sizes (missing: {', '.join(missing) or '-'}; "
                 f"unknown: {', '.join(unknown) or '-'})")
        lists = {}
        for key in ('iters', 'gt_sizes', 'batch_sizes'):
            value = prog[key]
            if not isinstance(value, (list, tuple)) or not value or not all(
                    isinstance(v, int) and not isinstance(v, bool) for v in value):
                fail(f'{key} must be a non-empty list of integers, got {value!r}')
            lists[key] = tuple(value)
        iters, sizes, batches = lists['iters'], lists['gt_sizes'], lists['batch_sizes']
        if not len(iters) == len(sizes) == len(batches):
            fail(f'iters, gt_sizes and batch_sizes must have the same length, got {len(iters)}, {len(sizes)}, '
                 f'{len(batches)}')
        if iters[0] != 0 or any(b <= a for a, b in zip(iters, iters[1:])):
            fail(f'iters must start at 0 and increase strictly, got {list(iters)}')
        most_size = f' and at most {limits[0]} ({gt_size})' if gt_size is not None else ''
        if any(size <= 0 or size % scale or (gt_size is not None and size > gt_size) for size in sizes):
            fail(f'gt_sizes {list(sizes)}: each must be positive, a multiple of the scale {scale}{most_size}')
        most_batch = f'between 1 and {limits[1]} ({batch_size})' if batch_size is not None else 'at least 1'
        if any(batch <= 0 or (batch_size is not None and batch > batch_size) for batch in batches):
            fail(f'batch_sizes {list(batches)}: each must be {most_batch}')
        return cls(iters, sizes, batches)

    def stage(self, current_iter: int) -> int:
        """Index of the stage that iteration ``current_iter`` (1-based) belongs to."""
        return max(k for k, start in enumerate(self.iters) if current_iter >= start)

    def sizes(self, current_iter: int) -> Tuple[int, int]:
        """(gt patch size, batch size per process) for ``current_iter``."""
        k = self.stage(current_iter)
        return self.gt_sizes[k], self.batch_sizes[k]


def crop_batch(lq: Tensor, gt: Tensor, gt_size: int, batch: int, scale: int) -> Tuple[Tensor, Tensor]:
    """Random ``batch`` samples of ``lq``/``gt``, cropped at one random place to gt_size (lq: gt_size // scale)."""
    lq_size = gt_size // scale
    h, w = lq.shape[-2:]
    if gt.shape[-2:] != (h * scale, w * scale):
        raise OptionError(f'progressive crop: GT {tuple(gt.shape[-2:])} is not {scale}x LQ {(h, w)}')
    if lq_size > min(h, w):
        raise OptionError(f'progressive crop: LQ patch {lq_size} is larger than the LQ batch {(h, w)}')
    if batch < lq.shape[0]:
        keep = torch.randperm(lq.shape[0])[:batch].to(lq.device)
        lq, gt = lq.index_select(0, keep), gt.index_select(0, keep)
    top = int(torch.randint(0, h - lq_size + 1, ()))
    left = int(torch.randint(0, w - lq_size + 1, ()))
    lq = lq[..., top:top + lq_size, left:left + lq_size]
    gt = gt[..., top * scale:(top + lq_size) * scale, left * scale:(left + lq_size) * scale]
    return lq, gt


def stage_message(current_iter: int, gt_size: int, batch: int) -> str:
    """Log line of a stage switch, e.g. 'progressive: iter 92000 -> patch 96, batch 16'."""
    return f'progressive: iter {current_iter} -> patch {gt_size}, batch {batch}'


# --------------------------------------------------------------------------------------------------- warm start
class WarmStart:
    """The paper's x3/x4 warm start: for iterations 1..``iters`` only ``to_target.*`` trains, then everything.

    During the phase every other weight keeps its loaded value bit for bit: its gradient is None, not zero, so
    neither Adam's moments nor AdamW's weight decay move it. Without DDP those weights stop requiring gradients (the
    backward pass ends at the head); DDP fixes the set of gradient-requiring parameters when it wraps the model, so
    there the gradients are dropped right before each optimizer step instead (``drop_frozen_grads``).
    """

    def __init__(self, net: nn.Module, iters: int, distributed: bool, log: Callable[[str], None]) -> None:
        self.iters, self.distributed, self.log = iters, distributed, log
        self.frozen = [p for n, p in net.named_parameters() if not n.startswith(WARM_START_TRAINED)]
        self.total = sum(p.numel() for p in net.parameters())
        self.active = False

    def update(self, current_iter: int) -> None:
        """Enter or leave the head-only phase for ``current_iter`` (1-based), logging the switch."""
        active = current_iter <= self.iters
        if active == self.active:
            return
        self.active = active
        if active:
            kept = sum(p.numel() for p in self.frozen)
            self.log(f'warm start: iter {current_iter} to {self.iters} train only {WARM_START_TRAINED}* '
                     f'({self.total - kept:,d} of {self.total:,d} parameters); the rest stays as loaded')
        else:
            self.log(f'warm start: iter {current_iter}: all parameters train from now on')
        self.set_requires_grad(not active)

    def set_requires_grad(self, flag: bool) -> None:
        """Skip (or restore) the backward pass through the frozen body, where DDP allows it."""
        if not self.distributed:
            for p in self.frozen:
                p.requires_grad_(flag)

    def drop_frozen_grads(self) -> None:
        """No gradient, hence no update, for the frozen weights during the phase."""
        if self.active:
            for p in self.frozen:
                p.grad = None


# -------------------------------------------------------------------------------------- losses and memory
def check_finite_losses(losses: Mapping[str, Tensor], current_iter: int, where_saved: str,
                        distributed: bool = False) -> None:
    """NonFiniteLossError (on every process of a distributed run) if any loss is NaN/inf, before any update."""
    bad = [(name, v.detach().float().mean().item()) for name, v in losses.items()
           if not torch.isfinite(v.detach()).all()]
    flag = torch.tensor(float(bool(bad)), device=next(iter(losses.values())).device)
    if distributed:
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if not flag.item():
        return
    what = f'loss {bad[0][0]} is {bad[0][1]}' if bad else 'a loss is not finite on another process'
    raise NonFiniteLossError(f'training stopped at iter {current_iter}: {what}; nothing was saved for this '
                             f'iteration; {where_saved}')


def same_weights_everywhere(module: nn.Module, what: str) -> int:
    """The number of processes of a distributed run, after checking they all hold the same weights (the sum and the
    sum of squares of every weight, in float64); RunError before anything diverged is saved."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    params = [p.detach() for p in module.parameters()]
    local = torch.stack([sum(p.double().sum() for p in params), sum(p.double().square().sum() for p in params)])
    gathered = [torch.zeros_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, local)
    if any(not torch.equal(g, gathered[0]) for g in gathered):
        raise RunError(f'{what}: the {len(gathered)} processes hold different weights (checksums '
                       f"{', '.join(f'{g[0].item():.9g}' for g in gathered)}); stopped before saving them")
    return len(gathered)


def training_step_bytes(net: nn.Module, batch: int, lq_size: int, dtype: torch.dtype = torch.float32) -> float:
    """Memory one training step of ``net`` takes for ``batch`` LQ patches of ``lq_size`` pixels: forward and
    backward traced on the meta device (no memory, no compute) for one sample, times the batch."""
    meta = type(net)(**net.arguments(), fast=net.fast).to('meta').train()
    x = torch.empty(1, net.in_chans, lq_size, lq_size, device='meta', dtype=dtype)

    def step() -> None:
        meta(x).float().abs().mean().backward()

    return traced_peak_bytes(step) * batch


def check_training_memory(net: nn.Module, batch: int, lq_size: int, device: torch.device, option: str) -> None:
    """OptionError when a training step cannot fit the memory at hand (what the machine's OOM killer would find out
    mid-run, possibly taking other jobs with it)."""
    free = available_bytes(device)
    if free is None:
        return
    need = training_step_bytes(net, batch, lq_size)
    if need > free:
        raise OptionError(f'{option}: {batch} patches of {lq_size}x{lq_size} LQ pixels need about '
                          f'{need / 2 ** 30:.1f} GiB for one training step of {net.describe()}, but {device} has '
                          f'{free / 2 ** 30:.1f} GiB available; use a smaller batch or patch')


# ----------------------------------------------------------------------------------------------- exact resume
class SampleKey(NamedTuple):
    """What a resumable sampler yields: the dataset index and the seed its augmentation draws from."""

    index: int
    seed: int


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """The seed of the sample at ``position`` (0-based, over all processes) of ``epoch`` in a run seeded ``seed``."""
    words = np.random.SeedSequence([seed % 2**63, epoch, position]).generate_state(2, np.uint32)
    return int(words[0]) << 31 | int(words[1]) >> 1


def capture_rng() -> dict:
    """The state of Python's, NumPy's and torch's global generators (CUDA's too where CUDA is initialised)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {'python': random.getstate(), 'numpy': (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                    cached),
             'torch': torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng(state: dict) -> None:
    """Set the global generators to a ``capture_rng()`` (tensors may come back on any device)."""
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])


@contextlib.contextmanager
def rng_preserved(cuda: bool = False) -> Iterator[None]:
    """Run the block without moving Python's, NumPy's and torch's CPU generators (and CUDA's if ``cuda``)."""
    python, numpy_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if cuda and torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy_state)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed Python's, NumPy's and torch's CPU generators with ``seed`` for the block, then put them back."""
    with rng_preserved():
        random.seed(seed)
        np.random.seed(seed % 2**32)
        # Not torch.manual_seed: that reseeds the CUDA generators too, which the model's dropout draws from.
        torch.default_generator.manual_seed(seed)
        yield


def rng_of_all_ranks(state: Optional[dict] = None) -> List[dict]:
    """capture_rng() (or ``state``) of every process of a distributed run, by rank (a collective call); else [it]."""
    state = capture_rng() if state is None else state
    if not (dist.is_available() and dist.is_initialized()):
        return [state]
    states: List[Optional[dict]] = [None] * dist.get_world_size()
    dist.all_gather_object(states, state)
    return states


def set_own_rng(states: Sequence[dict]) -> bool:
    """set_rng() this process's entry of rng_of_all_ranks(); False (nothing changed) if the world size differs."""
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    if len(states) != world:
        return False
    set_rng(states[rank])
    return True


def first_usable(candidates: Iterable[Tuple[int, str]], usable: Callable[[str], Optional[str]],
                 note: Callable[[str], None]) -> Optional[Tuple[int, str]]:
    """The first (iteration, path) of ``candidates`` (newest first) whose file ``usable`` finds no fault in (it
    returns the reason otherwise); each one skipped is noted. None when none is usable."""
    for iteration, path in candidates:
        reason = usable(path)
        if reason is None:
            return iteration, path
        note(f'skipping iteration {iteration}: {reason}')
    return None


def finite_checkpoint_note(found: Optional[Tuple[int, str]], resume_hint: str) -> str:
    """Where the last good checkpoint is, for the message that stops a diverged run."""
    if found is None:
        return 'no usable checkpoint had been saved yet'
    return f'the last good checkpoint is {found[1]} (iteration {found[0]}; {resume_hint})'


def end_process_group() -> None:
    """Destroy the default process group of a distributed run, if one is open, while the interpreter is whole.

    Left to interpreter exit, gloo's worker threads may still hold finished work whose tensors are then freed
    during finalisation, and the process aborts (SIGABRT, "terminate called without an active exception")
    after the run itself succeeded. Destroying is local to the process: no peer needs to take part.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def ending_process_group(command: Callable[..., T]) -> Callable[..., T]:
    """``command`` followed by end_process_group() however it ends (a failed run keeps its own exit status)."""
    @functools.wraps(command)
    def run(*args, **kwargs) -> T:
        try:
            return command(*args, **kwargs)
        finally:
            end_process_group()

    return run


def stop_loader_workers(*iterators: object) -> None:
    """Stop the worker processes of data-loader iterators now rather than when they are garbage-collected.

    A failed run's traceback (or a finished Runner's persistent workers) keeps an iterator alive; when a later
    collection in a process that goes on (a notebook, a test) finalises it, its queues may close first and joining
    then waits 5 s a worker. ``_shutdown_workers`` is torch's own clean stop, also run on exhaustion; anything without
    it (a single-process iterator, None) is left alone.
    """
    for iterator in iterators:
        stop = getattr(iterator, '_shutdown_workers', None)
        if stop is not None:
            stop()
