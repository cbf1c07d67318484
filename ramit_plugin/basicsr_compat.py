"""What the plugin changes in basicsr 1.4.2's pipelines, in one place (basicsr itself is not edited).

``patched_basicsr(opt)`` swaps these basicsr functions while `basicsr train/test` run:

- ``basicsr.utils.options.ordered_yaml``: PyYAML's full Loader, which constructs Python objects from option files
  (and parse_options then applies --force_yml with eval/exec) -> a loader that hands over ``opt``, the options
  ``ramit_plugin.option_checks`` already read safely, applied --force_yml to and checked;
- ``basicsr.utils.options.init_dist``: calls ``torch.cuda.set_device`` -> ``init_dist``, gloo on CPU-only machines;
- ``basicsr.train.load_resume_state``: maps the state to the current CUDA device with a full unpickler, and takes
  the newest state even when its files are damaged -> ``BasicsrRun.load_resume_state``: on the CPU with
  ``weights_only``, the newest complete checkpoint (damaged ones are skipped, saying so), stale temporary files of
  killed saves removed;
- ``basicsr.train.create_train_val_dataloader`` -> ``BasicsrRun.create_train_val_dataloader``: basicsr's, with
  ``ResumableSampler`` (the same order, per-sample seeds, an epoch resumed where it stopped) and ``SeededDataset``
  (each sample's augmentation drawn from its own seed; a sample that cannot be read is a one-line error naming it).

With RAMiTModel saving and restoring the global random state (``ramit_plugin.random_state``), a run resumed with
--auto_resume is the uninterrupted run: the same samples, augmentations and random draws, bit-identical weights.
``latest_checkpoint`` is the one scan of an experiment's saved iterations (auto-resume and the NaN-stop message).
compat.py holds the import-time shim basicsr needs on current torchvision.
"""
import contextlib
import copy
import functools
import os
import re
import sys
from os import path as osp
from typing import Iterator, List, Optional, Tuple
from unittest import mock

import torch
import yaml
from torch.utils import data

from basicsr.data.data_sampler import EnlargedSampler

from .checkpoint import load_error_reason, read_checkpoint
from .data.errors import DatasetError
from .data.file_list import dataset_label
from .errors import OptionError, RamitError
from .fileio import remove_stale_parts
from .image_files import ImageFileError, decode
from .random_state import SampleKey, sample_seed, seeded

STATE_NAME = re.compile(r'(\d+)\.state$')
# YAML 1.2 floats: PyYAML (YAML 1.1) reads 1e-3 and 5e+4 (no dot) as strings, which users mean as numbers.
YAML12_FLOAT = re.compile(r'^[-+]?(?:\d[\d_]*)?(?:\.\d*)?[eE][-+]?\d+$')


class SafeOptionLoader(getattr(yaml, 'CSafeLoader', yaml.SafeLoader)):
    """PyYAML's safe loader (no Python objects), reading exponent floats without a dot (1e-3) as YAML 1.2 does."""


SafeOptionLoader.add_implicit_resolver('tag:yaml.org,2002:float', YAML12_FLOAT, list('-+0123456789.'))


def safe_ordered_yaml():
    """A safe Loader for option files (no Python objects; 1e-3 is a float) and the Dumper basicsr pairs with it."""
    return SafeOptionLoader, getattr(yaml, 'CDumper', yaml.Dumper)


def init_dist(launcher: str, backend: str = 'nccl', **kwargs) -> None:
    """basicsr's init_dist on CUDA machines (NCCL); gloo without CUDA, where basicsr calls torch.cuda.set_device."""
    import torch.distributed as dist
    from basicsr.utils import dist_util
    if torch.cuda.is_available():
        dist_util.init_dist(launcher, backend, **kwargs)
    else:
        dist.init_process_group(backend='gloo', **kwargs)


def saved_iterations(models_dir: str, states_dir: str) -> Iterator[Tuple[int, str, str]]:
    """(iteration, models/net_g_<i>.pth, training_states/<i>.state) of the iterations saved with both files (what
    --auto_resume can continue from), newest first."""
    if not osp.isdir(states_dir):
        return
    for i in sorted((int(m.group(1)) for m in map(STATE_NAME.match, os.listdir(states_dir)) if m), reverse=True):
        model = osp.join(models_dir, f'net_g_{i}.pth')
        if osp.isfile(model):
            yield i, model, osp.join(states_dir, f'{i}.state')


def latest_checkpoint(models_dir: str, states_dir: str) -> Optional[Tuple[int, str, str]]:
    """The newest of saved_iterations(), or None when nothing was saved."""
    return next(saved_iterations(models_dir, states_dir), None)


def read_training_state(path: str) -> dict:
    """A training state loaded on the CPU with weights_only; OptionError naming the file if it is not one."""
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # truncated file, foreign pickle
        raise OptionError(f'{path}: not a readable training state ({load_error_reason(err)})') from None
    if not isinstance(state, dict) or not isinstance(state.get('iter'), int):
        raise OptionError(f'{path}: not a BasicSR training state (no iteration in it)')
    return state


def note(message: str) -> None:
    """A line on stderr before basicsr's logger exists (it may not be initialised before the log file is known)."""
    print(f'--auto_resume: {message}', file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------- data loading
class ResumableSampler(EnlargedSampler):
    """basicsr's EnlargedSampler (the same order) yielding SampleKeys, and able to start an epoch part-way.

    A sample's seed depends on the run's seed, the epoch and its position in the epoch's permutation (over all
    processes), so its crop and flips do not depend on the worker that loads it.
    """

    def __init__(self, dataset: data.Dataset, num_replicas: int, rank: int, ratio: int = 1, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas, rank, ratio)
        self.seed = seed
        self.resume_epoch: Optional[int] = None
        self.resume_skip = 0

    def start_at(self, epoch: int, skip: int) -> None:
        """Leave out the first ``skip`` samples of ``epoch`` (those a resumed run trained on before it stopped)."""
        self.resume_epoch, self.resume_skip = epoch, skip

    def __iter__(self) -> Iterator[SampleKey]:
        indices = list(super().__iter__())
        # Every iterator of the resumed epoch skips: basicsr's prefetcher makes one before the loop starts its own.
        start = self.resume_skip if self.epoch == self.resume_epoch else 0
        for k in range(start, len(indices)):
            yield SampleKey(indices[k], sample_seed(self.seed, self.epoch, self.rank + k * self.num_replicas))


class SeededDataset(data.Dataset):
    """Any basicsr dataset, loading a SampleKey's sample inside seeded(key.seed); a sample that cannot be read is a
    DatasetError naming its file (basicsr's own datasets fail with e.g. "'NoneType' object has no attribute")."""

    def __init__(self, dataset: data.Dataset) -> None:
        self.dataset = dataset

    def __getattr__(self, name: str):
        if name == 'dataset' or name.startswith('__'):  # not set yet (unpickling in a spawned worker), protocols
            raise AttributeError(name)
        return getattr(self.dataset, name)  # basicsr's validation reads dataset.opt

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        if isinstance(key, SampleKey):
            with seeded(key.seed):
                return self._load(key.index)
        return self._load(key)

    def _load(self, index: int) -> dict:
        try:
            return self.dataset[index]
        except RamitError:
            raise
        except Exception as err:  # whatever a basicsr dataset raises for a damaged file
            raise DatasetError(unreadable_sample(self.dataset, index, err)) from None


def unreadable_sample(dataset: data.Dataset, index: int, err: Exception) -> str:
    """The message for a sample that failed to load: the file that is not an image, else its files and the error."""
    label = dataset_label(getattr(dataset, 'opt', {}))
    entry = getattr(dataset, 'paths', [None] * (index + 1))[index]
    files = ([v for k, v in entry.items() if k.endswith('_path')] if isinstance(entry, dict)
             else [entry] if isinstance(entry, str) else [])
    if (getattr(dataset, 'io_backend_opt', None) or {}).get('type', 'disk') == 'disk':
        for path in files:
            try:
                decode(path)
            except (ImageFileError, OSError) as bad:
                return f'{label}: {bad}'
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return f"{label}: cannot load {' and '.join(map(str, files)) or f'sample {index}'} ({reason})"


# ------------------------------------------------------------------------------------------------------ the run
class BasicsrRun:
    """The replacements of basicsr functions for one `basicsr train/test` run, sharing its options and state."""

    def __init__(self, opt: dict) -> None:
        import basicsr.train
        self.opt = opt
        self.resume_state: Optional[dict] = None
        self.basicsr_create_loaders = basicsr.train.create_train_val_dataloader

    def ordered_yaml(self):
        """basicsr.utils.options.ordered_yaml: a Loader that returns the checked options instead of reading."""
        run = self

        class CheckedOptions:
            """What yaml.load(stream, Loader) needs: the options, read and checked before basicsr started."""

            def __init__(self, stream) -> None:
                pass

            def get_single_data(self) -> dict:
                return copy.deepcopy(run.opt)

            def dispose(self) -> None:
                pass

        return CheckedOptions, safe_ordered_yaml()[1]

    def load_resume_state(self, opt: dict) -> Optional[dict]:
        """basicsr.train.load_resume_state, safely: the newest complete checkpoint on the CPU with weights_only."""
        from basicsr.utils import check_resume
        if opt['auto_resume']:
            # Every process of a distributed run gets here; the first one cleans up.
            for folder in (opt['path']['models'], opt['path']['training_states']) if opt.get('rank', 0) == 0 else ():
                stale = remove_stale_parts(folder)
                if stale:
                    note(f'removed {len(stale)} unfinished temporary file(s) of killed saves in {folder}')
            state = self._newest_complete(opt)
        elif opt['path'].get('resume_state'):
            state = read_training_state(opt['path']['resume_state'])
        else:
            return None
        if state is None:
            return None
        check_resume(opt, state['iter'])
        if state.get('manual_seed') is not None:  # the per-sample seeds of the run being continued
            opt['manual_seed'] = state['manual_seed']
        self.resume_state = state
        return state

    @staticmethod
    def _newest_complete(opt: dict) -> Optional[dict]:
        """The newest saved iteration whose state and network both load; damaged ones are skipped, saying so."""
        skipped: List[str] = []
        for i, model, state_path in saved_iterations(opt['path']['models'], opt['path']['training_states']):
            try:
                state = read_training_state(state_path)
                read_checkpoint(model, 'params')
            except RamitError as err:
                note(f'skipping iteration {i}: {err}')
                skipped.append(str(i))
                continue
            if skipped:
                note(f'resuming from iteration {i}, the newest complete checkpoint')
            opt['path']['resume_state'] = state_path
            return state
        if skipped:
            raise OptionError(f"--auto_resume: no complete checkpoint in {opt['path']['experiments_root']} (damaged: "
                              f"iterations {', '.join(skipped)}); move the folder aside to start anew")
        return None

    def create_train_val_dataloader(self, opt: dict, logger) -> tuple:
        """basicsr's, with ResumableSampler and SeededDataset; a resumed run continues its epoch where it stopped."""
        import basicsr.train
        from basicsr.data import build_dataset

        seed = opt['manual_seed']
        with mock.patch.object(basicsr.train, 'EnlargedSampler', functools.partial(ResumableSampler, seed=seed)), \
                mock.patch.object(basicsr.train, 'build_dataset', lambda o: SeededDataset(build_dataset(o))):
            train_loader, sampler, val_loaders, total_epochs, total_iters = self.basicsr_create_loaders(opt, logger)
        # The workers' base seed, drawn at each epoch's start, comes from here instead of torch's global generator,
        # so starting an epoch leaves the model's random draws as they are (all augmentation is per sample).
        train_loader.generator = torch.Generator().manual_seed(seed)
        state = self.resume_state
        if state is not None:
            per_epoch = len(sampler) // train_loader.batch_size
            done = min(max(state['iter'] - state['epoch'] * per_epoch, 0), per_epoch)
            sampler.start_at(state['epoch'], done * train_loader.batch_size)
        return train_loader, sampler, val_loaders, total_epochs, total_iters


@contextlib.contextmanager
def patched_basicsr(opt: dict) -> Iterator[BasicsrRun]:
    """Run basicsr 1.4.2's pipelines on the checked options ``opt`` with the plugin's replacements (module doc)."""
    import basicsr.train
    import basicsr.utils.options
    run = BasicsrRun(opt)
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(basicsr.utils.options, 'ordered_yaml', run.ordered_yaml))
        stack.enter_context(mock.patch.object(basicsr.utils.options, 'init_dist', init_dist))
        stack.enter_context(mock.patch.object(basicsr.train, 'load_resume_state', run.load_resume_state))
        stack.enter_context(mock.patch.object(basicsr.train, 'create_train_val_dataloader',
                                              run.create_train_val_dataloader))
        yield run

