"""Runner-side fixes for mmengine 0.10.7 on current torch, kept in the plugin (mmengine itself is not edited)."""
import datetime
import os
import re
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer

from ..registry import HOOKS

ITER_CHECKPOINT = re.compile(r'iter_(\d+)\.pth')  # what mmengine's CheckpointHook names iteration checkpoints

# What an mmengine checkpoint holds beyond tensors and plain containers, once WeightsOnlyCheckpointHook has
# rewritten the message hub's buffers: numpy arrays/scalars (logged values, best scores) and HistoryBuffer itself.
_MULTIARRAY = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray  # numpy 2 / numpy 1
# numpy >= 1.25 pickles a dtype through its class (numpy.dtypes.Float64DType, ...): the numeric ones are allowed.
_NUMERIC_DTYPES = [type(np.dtype(t)) for t in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                                               np.uint32, np.uint64, np.float16, np.float32, np.float64)]
CHECKPOINT_GLOBALS = [np.ndarray, np.dtype, _MULTIARRAY._reconstruct, _MULTIARRAY.scalar, HistoryBuffer,
                      *_NUMERIC_DTYPES]


def allow_mmengine_checkpoints() -> None:
    """Let torch.load's ``weights_only`` default (torch >= 2.6) read the checkpoints mmengine's Runner saves.

    mmengine 0.10.7 calls ``torch.load`` without ``weights_only`` when it loads or resumes. Only the types in
    CHECKPOINT_GLOBALS are allowed, never arbitrary code (``weights_only`` stays on).
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


def read_resume_checkpoint(path: str) -> None:
    """OptionError naming ``path`` unless it is an mmengine checkpoint torch.load reads with weights_only.

    mmengine's resume would raise an UnpicklingError (or EOFError) traceback from deep inside the Runner instead.
    """
    from ..checkpoint import load_error_reason
    from ..errors import OptionError

    if not os.path.isfile(path):
        raise OptionError(f'--resume {path}: no such file')
    allow_mmengine_checkpoints()
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # truncated files, foreign or malicious pickles
        raise OptionError(f'--resume {path}: not a readable mmengine checkpoint ({load_error_reason(err)})') from None
    if not isinstance(checkpoint, dict) or 'meta' not in checkpoint or 'state_dict' not in checkpoint:
        raise OptionError(f'--resume {path}: not an mmengine training checkpoint (no meta and state_dict); to start '
                          'from weights use model.pretrained')


def latest_resumable(work_dir: str) -> Optional[str]:
    """What ``--resume`` (no path) continues from: the checkpoint ``last_checkpoint`` names, or, where that file is
    missing, empty or names a file that is gone or damaged (a run killed while saving), the newest readable
    ``iter_<N>.pth`` in ``work_dir``, saying so. None when there is none."""
    import sys

    from ..errors import OptionError

    if not os.path.isdir(work_dir):  # a first run (other ranks may look before the first creates it)
        return None
    named = ''
    if os.path.isfile(os.path.join(work_dir, 'last_checkpoint')):
        with open(os.path.join(work_dir, 'last_checkpoint')) as f:
            named = f.read().strip()
    saved = sorted((int(m.group(1)), m.group(0)) for m in map(ITER_CHECKPOINT.fullmatch, os.listdir(work_dir)) if m)
    # Absolute paths: mmengine writes one into last_checkpoint while the work dir is often relative.
    named = os.path.abspath(named) if named else ''
    candidates = list(dict.fromkeys([named] * bool(named)
                                    + [os.path.abspath(os.path.join(work_dir, n)) for _, n in reversed(saved)]))
    for path in candidates:
        try:
            read_resume_checkpoint(path)
        except OptionError as err:
            print(f'{err}; skipped', file=sys.stderr)
            continue
        if path != named:
            print(f'--resume: {os.path.join(work_dir, "last_checkpoint")} names no readable checkpoint '
                  f'({named or "it is empty or missing"}); resuming from {path}, the newest one', file=sys.stderr)
        return path
    if candidates:
        raise OptionError(f'--resume: no readable checkpoint in {work_dir} (tried {", ".join(candidates)}); move '
                          'them aside to start anew')
    return None


def prepare_distributed(cfg) -> None:
    """Let mmengine's distributed Runner start on a machine without CUDA (gloo, DDP without device_ids).

    mmengine's ``init_dist`` calls ``torch.cuda.set_device`` and its DDP wrapper passes ``device_ids=[LOCAL_RANK]``,
    both CUDA-only. On CPU we open the gloo process group ourselves (the Runner reuses an initialised one) and
    give the wrapper ``device_ids=None``. With CUDA the config is left as it is.
    """
    if torch.cuda.is_available():
        return
    if cfg.launcher != 'pytorch':
        raise RuntimeError(f'--launcher {cfg.launcher} needs CUDA; on a CPU-only machine start the processes '
                           'with torchrun ... --launcher pytorch')
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', {}), backend='gloo')
    cfg.merge_from_dict({'env_cfg.dist_cfg': dist_cfg})
    cfg.model_wrapper_cfg = dict(cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel'),
                                 device_ids=None)
    if not dist.is_initialized():
        timeout: Optional[float] = dist_cfg.get('timeout')
        kwargs = dict(timeout=datetime.timedelta(seconds=timeout)) if timeout is not None else {}
        dist.init_process_group(backend='gloo', **kwargs)
