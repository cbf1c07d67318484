"""Runner-side adaptations for mmengine 0.10.7 on current torch, kept in the plugin (mmengine itself is not edited):
loading its own checkpoints with torch's ``weights_only`` default, finding what ``--resume`` continues from, and
distributed runs on CPU-only machines."""
import datetime
import os
import re
import sys
import time
from os import path as osp
from typing import Optional

import torch
import torch.distributed as dist
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer

from ramit.checkpoint import TRAINING_FILE_GLOBALS, CheckpointError, select_state_dict, torch_load, unusable_weights
from ramit.errors import OptionError
from ramit.training import first_usable, stop_loader_workers

from ..registry import HOOKS

ITER_CHECKPOINT = re.compile(r'iter_(\d+)\.pth')  # what mmengine's CheckpointHook names iteration checkpoints
# What an mmengine checkpoint holds beyond tensors once WeightsOnlyCheckpointHook has rewritten the message hub's
# buffers: numpy values (ramit.checkpoint reads those for one call) and HistoryBuffer itself, which the Runner needs.
CHECKPOINT_GLOBALS = [g for g in TRAINING_FILE_GLOBALS if not isinstance(g, tuple)] + [HistoryBuffer]
# How long a process of a distributed run waits for the others (a dead peer ends the wait with an error first).
DIST_TIMEOUT = datetime.timedelta(seconds=int(os.environ.get('RAMIT_DIST_TIMEOUT', 600)))


def allow_mmengine_checkpoints() -> None:
    """Let torch.load's ``weights_only`` default (torch >= 2.6) read the checkpoints mmengine's Runner saves.

    mmengine 0.10.7 calls ``torch.load`` without ``weights_only`` when it loads or resumes. Only the types in
    CHECKPOINT_GLOBALS are allowed, never arbitrary code (``weights_only`` stays on). This widens the allow-list of
    processes that use the mmengine adapter only.
    """
    torch.serialization.add_safe_globals(CHECKPOINT_GLOBALS)


class _PortableHistoryBuffer(HistoryBuffer):
    """A HistoryBuffer that pickles as ``HistoryBuffer(log_history, count_history, max_length)``.

    HistoryBuffer's own pickle stores its statistics methods through ``builtins.getattr``, which no
    weights_only loader may allow; the default methods come back from the constructor anyway.
    """

    def __reduce__(self):
        return HistoryBuffer, (self._log_history, self._count_history, self.max_length)


@HOOKS.register_module()
class WeightsOnlyCheckpointHook(Hook):
    """Make the Runner's checkpoints loadable with ``torch.load(weights_only=True)`` (see _PortableHistoryBuffer).

    ``ramit mm-train`` adds it when the config does not; configs for other launchers list it in ``custom_hooks``.
    """

    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Rewrite the message hub's HistoryBuffers in the checkpoint about to be saved."""
        scalars = checkpoint.get('message_hub', {}).get('log_scalars', {})
        for key, buffer in scalars.items():
            if isinstance(buffer, HistoryBuffer):
                portable = _PortableHistoryBuffer.__new__(_PortableHistoryBuffer)
                portable.__dict__.update(buffer.__dict__)
                scalars[key] = portable


def ensure_plugin_hooks(cfg) -> None:
    """Add WeightsOnlyCheckpointHook and RandomStateHook (exact resume) to ``cfg.custom_hooks`` unless listed."""
    hooks = list(cfg.get('custom_hooks') or [])
    for name in ('WeightsOnlyCheckpointHook', 'RandomStateHook'):
        if not any(str(h.get('type', '')).endswith(name) for h in hooks):
            hooks.append(dict(type=f'ramit_plugin.{name}'))
    cfg.custom_hooks = hooks


def resume_fault(path: str) -> Optional[str]:
    """Why ``path`` cannot be resumed from (not a readable mmengine training checkpoint, or weights that are not
    finite floats), or None."""
    if not os.path.isfile(path):
        return f'{path}: no such file'
    try:
        checkpoint = torch_load(path, 'mmengine checkpoint')
    except CheckpointError as err:
        return str(err)
    if not isinstance(checkpoint, dict) or 'meta' not in checkpoint or 'state_dict' not in checkpoint:
        return f'{path}: not an mmengine training checkpoint (no meta and state_dict); to start from weights use ' \
               'model.pretrained'
    try:
        return unusable_weights(select_state_dict(checkpoint, path), path)
    except CheckpointError as err:
        return str(err)


def read_resume_checkpoint(path: str) -> None:
    """OptionError naming ``path`` unless it is an mmengine checkpoint with finite weights that torch.load reads with
    weights_only (mmengine's resume would raise an UnpicklingError traceback from deep inside the Runner, or train
    on NaN weights)."""
    fault = resume_fault(path)
    if fault:
        raise OptionError(f'--resume {fault}')


def resumable(work_dir: str) -> list:
    """(iteration, path) of the iteration checkpoints in ``work_dir``, newest first, the one ``last_checkpoint``
    names first of all."""
    if not os.path.isdir(work_dir):
        return []
    named = ''
    if os.path.isfile(os.path.join(work_dir, 'last_checkpoint')):
        with open(os.path.join(work_dir, 'last_checkpoint')) as f:
            named = f.read().strip()
    saved = sorted((int(m.group(1)), m.group(0)) for m in map(ITER_CHECKPOINT.fullmatch, os.listdir(work_dir)) if m)
    # Absolute paths: mmengine writes one into last_checkpoint while the work dir is often relative.
    match = ITER_CHECKPOINT.fullmatch(os.path.basename(named))
    candidates = [(int(match.group(1)) if match else -1, os.path.abspath(named))] if named else []
    candidates += [(i, os.path.abspath(os.path.join(work_dir, n))) for i, n in reversed(saved)]
    ordered, seen = [], set()
    for iteration, path in candidates:
        if path not in seen:
            seen.add(path)
            ordered.append((iteration, path))
    return ordered


def latest_resumable(work_dir: str) -> Optional[str]:
    """What ``--resume`` (no path) continues from: the checkpoint ``last_checkpoint`` names, or, where that file is
    missing, empty or names a file that is gone, damaged or not finite (a run killed while saving, or diverged), the
    newest usable ``iter_<N>.pth``, saying so. None when nothing was saved."""
    candidates = resumable(work_dir)
    found = first_usable(candidates, resume_fault, lambda line: print(f'--resume: {line}', file=sys.stderr))
    if found is None:
        if candidates:
            raise OptionError(f'--resume: no usable checkpoint in {work_dir} (tried '
                              f'{", ".join(p for _, p in candidates)}); move them aside to start anew')
        return None
    last = os.path.join(work_dir, 'last_checkpoint')
    named = ''
    if os.path.isfile(last):
        with open(last) as f:
            named = f.read().strip()
    if not named:  # killed before (or while) mmengine wrote it
        print(f'--resume: {last} names no readable checkpoint (it is empty or missing); resuming from {found[1]}',
              file=sys.stderr)
    elif found != candidates[0]:
        print(f'--resume: resuming from {found[1]}, the newest usable checkpoint', file=sys.stderr)
    return found[1]


def last_finite_checkpoint(work_dir: str) -> Optional[tuple]:
    """(iteration, path) of the newest usable iteration checkpoint in ``work_dir``, or None."""
    return first_usable([c for c in resumable(work_dir) if c[0] >= 0], resume_fault, lambda line: None)


def prepare_distributed(cfg) -> None:
    """Let mmengine's distributed Runner start on a machine without CUDA (gloo, DDP without device_ids).

    mmengine's ``init_dist`` calls ``torch.cuda.set_device`` and its DDP wrapper passes ``device_ids=[LOCAL_RANK]``,
    both CUDA-only. On CPU we open the gloo process group ourselves (the Runner reuses an initialised one) and
    give the wrapper ``device_ids=None``. With CUDA the config is left as it is.
    """
    if torch.cuda.is_available():
        return
    if cfg.launcher != 'pytorch':
        raise OptionError(f'--launcher {cfg.launcher} needs CUDA; on a CPU-only machine start the processes '
                          'with torchrun ... --launcher pytorch')
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', {}), backend='gloo')
    cfg.merge_from_dict({'env_cfg.dist_cfg': dist_cfg})
    cfg.model_wrapper_cfg = dict(cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel'),
                                 device_ids=None)
    if not dist.is_initialized():
        timeout: Optional[float] = dist_cfg.get('timeout')
        dist.init_process_group(backend='gloo', timeout=datetime.timedelta(seconds=timeout) if timeout is not None
                                else DIST_TIMEOUT)


def stop_runner_workers(runner) -> None:
    """Stop the data-loader workers of a Runner's train, val and test loops (see ramit.training.stop_loader_workers):
    persistent ones, which the DataLoader keeps, and the live iterator of an iteration-based training loop, which
    holds its workers when they are not persistent. Loops never built are still config dicts and have none."""
    loops = (runner._train_loop, runner._val_loop, runner._test_loop)  # the properties would build unbuilt loops
    stop_loader_workers(*(getattr(getattr(loop, holder, None), '_iterator', None)
                          for loop in loops for holder in ('dataloader', 'dataloader_iterator')))


def wait_for_own_log_dir(work_dir: str) -> None:
    """Return in a second whose ``<work_dir>/<timestamp>`` log folder does not exist yet.

    The Runner names a run's log folder by the second it starts; a run that starts within the second of the one
    before it (a fast resume, a notebook) would mix its log into that run's and replace its config copy.
    """
    while osp.isdir(osp.join(work_dir, time.strftime('%Y%m%d_%H%M%S'))):
        time.sleep(1 - time.time() % 1 + 0.001)
