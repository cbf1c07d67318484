"""Progressive patch training (the paper's training recipe): patch and batch sizes that change at given iterations.

The dataloader keeps delivering the largest patch and batch; the model crops and subsamples each batch to the
current stage (the approach of Restormer, a BasicSR fork), so BasicSR's loop, samplers and resume stay untouched.
"""
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

import torch

Tensor = torch.Tensor
OPTION = 'train:progressive'
# What bounds the stages in BasicSR: the train dataset's patch and batch (the mmengine restorer names its own).
LIMITS = ('datasets:train:gt_size', 'datasets:train:batch_size_per_gpu')


@dataclass(frozen=True)
class ProgressiveSchedule:
    """Stage k (gt_sizes[k], batch_sizes[k]) runs from iteration iters[k] until the next stage starts."""
    iters: Tuple[int, ...]
    gt_sizes: Tuple[int, ...]
    batch_sizes: Tuple[int, ...]

    @classmethod
    def from_options(cls, prog: Mapping, gt_size: Optional[int], batch_size: Optional[int], scale: int = 1,
                     option: str = OPTION, limits: Tuple[str, str] = LIMITS) -> 'ProgressiveSchedule':
        """Validate ``prog`` (the option named ``option``) against the delivered patch/batch (ValueError).

        ``limits`` names where ``gt_size`` and ``batch_size`` come from; None checks only the schedule itself.
        """
        def fail(msg: str) -> None:
            raise ValueError(f'{option}: {msg}')

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
        """Index of the stage that iteration ``current_iter`` (1-based, as BasicSR counts) belongs to."""
        return max(k for k, start in enumerate(self.iters) if current_iter >= start)

    def sizes(self, current_iter: int) -> Tuple[int, int]:
        """(gt patch size, batch size per GPU) for ``current_iter``."""
        k = self.stage(current_iter)
        return self.gt_sizes[k], self.batch_sizes[k]


def crop_batch(lq: Tensor, gt: Tensor, gt_size: int, batch: int, scale: int) -> Tuple[Tensor, Tensor]:
    """Random ``batch`` samples of ``lq``/``gt``, cropped at one random place to gt_size (lq: gt_size // scale)."""
    lq_size = gt_size // scale
    h, w = lq.shape[-2:]
    if gt.shape[-2:] != (h * scale, w * scale):
        raise ValueError(f'progressive crop: GT {tuple(gt.shape[-2:])} is not {scale}x LQ {(h, w)}')
    if lq_size > min(h, w):
        raise ValueError(f'progressive crop: LQ patch {lq_size} is larger than the LQ batch {(h, w)}')
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

