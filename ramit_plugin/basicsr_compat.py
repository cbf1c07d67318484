"""What the plugin changes in basicsr 1.4.2's pipelines, in one place (basicsr itself is not edited).

``patched_basicsr()`` swaps three basicsr functions while `basicsr train/test` run:

- ``basicsr.utils.options.ordered_yaml``: PyYAML's full Loader, which constructs Python objects from option
  files, -> ``safe_ordered_yaml`` (SafeLoader);
- ``basicsr.utils.options.init_dist``: calls ``torch.cuda.set_device`` -> ``init_dist``, gloo on CPU-only machines;
- ``basicsr.train.load_resume_state``: maps the state to the current CUDA device with a full unpickler ->
  ``load_resume_state``, on the CPU with ``weights_only`` (the optimizers move it to the device).

``latest_checkpoint`` is the one scan of an experiment's saved iterations (auto-resume and the NaN-stop message).
compat.py holds the import-time shim basicsr needs on current torchvision.
"""
import contextlib
import os
import re
from os import path as osp
from typing import Iterator, Optional, Tuple
from unittest import mock

import yaml

from .errors import OptionError

STATE_NAME = re.compile(r'(\d+)\.state$')


def safe_ordered_yaml():
    """Replacement for basicsr.utils.options.ordered_yaml: a safe Loader (no Python objects) and its Dumper."""
    loader = getattr(yaml, 'CSafeLoader', yaml.SafeLoader)
    dumper = getattr(yaml, 'CDumper', yaml.Dumper)
    return loader, dumper


def init_dist(launcher: str, backend: str = 'nccl', **kwargs) -> None:
    """basicsr's init_dist on CUDA machines (NCCL); gloo without CUDA, where basicsr calls torch.cuda.set_device."""
    import torch
    import torch.distributed as dist
    from basicsr.utils import dist_util
    if torch.cuda.is_available():
        dist_util.init_dist(launcher, backend, **kwargs)
    else:
        dist.init_process_group(backend='gloo', **kwargs)


def latest_checkpoint(models_dir: str, states_dir: Optional[str] = None) -> Optional[Tuple[int, str, Optional[str]]]:
    """(iteration, models/net_g_<i>.pth, training_states/<i>.state) of the newest iteration saved completely.

    With ``states_dir`` an iteration counts only when both files exist (what --auto_resume can continue from);
    without, the newest network checkpoint counts (state None). None when nothing was saved.
    """
    folder = states_dir if states_dir is not None else models_dir
    pattern = STATE_NAME if states_dir is not None else re.compile(r'net_g_(\d+)\.pth$')
    if not osp.isdir(folder):
        return None
    iters = sorted((int(m.group(1)) for m in map(pattern.match, os.listdir(folder)) if m), reverse=True)
    for i in iters:
        model = osp.join(models_dir, f'net_g_{i}.pth')
        if osp.isfile(model):
            return i, model, osp.join(states_dir, f'{i}.state') if states_dir is not None else None
    return None


def load_resume_state(opt: dict) -> Optional[dict]:
    """basicsr.train.load_resume_state, but loaded on the CPU with weights_only (optimizers move it to the device)."""
    import torch
    from basicsr.utils import check_resume
    if opt['auto_resume']:
        found = latest_checkpoint(opt['path']['models'], opt['path']['training_states'])
        path = found[2] if found else None
        if path:
            opt['path']['resume_state'] = path
    else:
        path = opt['path'].get('resume_state')
    if not path:
        return None
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # truncated file, foreign pickle
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise OptionError(f'{path}: not a readable training state ({reason[:200]})') from None
    check_resume(opt, state['iter'])
    return state


@contextlib.contextmanager
def patched_basicsr() -> Iterator[None]:
    """Swap basicsr 1.4.2's unsafe YAML loader, CUDA-only dist init and CUDA resume loading for the plugin's."""
    import basicsr.train
    import basicsr.utils.options
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(basicsr.utils.options, 'ordered_yaml', safe_ordered_yaml))
        stack.enter_context(mock.patch.object(basicsr.utils.options, 'init_dist', init_dist))
        stack.enter_context(mock.patch.object(basicsr.train, 'load_resume_state', load_resume_state))
        yield
