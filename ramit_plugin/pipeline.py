"""`basicsr train` and `basicsr test`: basicsr 1.4.2's ``train_pipeline`` and ``test_pipeline``, step for step, built
from basicsr's own parts (datasets, dataloaders, models, loggers, prefetchers, metrics), with the differences that
basicsr's functions cannot be made to do without patching them (one line of why each):

- the options come in read and checked (``ramit_cli.options``): basicsr's ``parse_options`` reads YAML with a loader
  that constructs Python objects and applies ``--force_yml`` with ``exec``;
- distributed runs start on CPU-only machines (gloo) and bind a GPU by LOCAL_RANK: basicsr's ``init_dist`` calls
  ``torch.cuda.set_device(RANK % GPUs)``;
- ``--auto_resume`` continues from the newest *usable* checkpoint, read on the CPU with ``weights_only``: basicsr's
  ``load_resume_state`` takes the newest file even when damaged and maps it to CUDA with a full unpickler;
- the training sampler gives each sample its own seed and can start an epoch part-way, and every sample is read
  through ``SeededDataset`` (exact resume; one-line errors naming the file; LMDBs guarded): basicsr builds its
  sampler and datasets inside ``create_train_val_dataloader``;
- the loop ends at ``total_iter`` (basicsr's counts one iteration past it per remaining epoch) and the eta of the
  last iteration is 0 (basicsr's is -1 iteration); the network is logged in one line (RAMiTModel).

``BASICSR_MIRRORED`` holds the hashes of the basicsr functions this module follows; tests fail loudly when a basicsr
release changes one of them, so this module is reviewed against it.
"""
import contextlib
import datetime
import faulthandler
import hashlib
import importlib
import inspect
import itertools
import logging
import os
import random
import signal
import sys
import time
from logging.handlers import MemoryHandler
from os import path as osp
from typing import Iterator, Optional, Tuple

import lmdb as lmdb_module
import torch
import torch.distributed as dist
from basicsr.data import build_dataloader, build_dataset
from basicsr.data.data_sampler import EnlargedSampler
from basicsr.data.prefetch_dataloader import CPUPrefetcher, CUDAPrefetcher
from basicsr.models import build_model
from basicsr.utils import (AvgTimer, MessageLogger, check_resume, get_env_info, get_root_logger, get_time_str,
                           init_tb_logger, init_wandb_logger, make_exp_dirs, mkdir_and_rename, set_random_seed)
from basicsr.utils.dist_util import get_dist_info, init_dist
from basicsr.utils.options import copy_opt_file, dict2str
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY
from torch.utils import data

from ramit.datasets import DatasetError, LmdbGuard, dataset_label
from ramit.errors import OptionError, RamitError, RunError
from ramit.fileio import remove_stale_parts
from ramit.images import ImageFileError, decode
from ramit.training import SampleKey, ending_process_group, sample_seed, seeded, stop_loader_workers

from .experiment import experiment_lock, newest_usable, read_training_state

# sha256 (first 16 hex digits) of the source of each basicsr 1.4.2 function this module follows.
BASICSR_MIRRORED = {
    'basicsr.train.train_pipeline': 'daf6515cece632b4',
    'basicsr.train.create_train_val_dataloader': '7dc43480652eb6f4',
    'basicsr.train.load_resume_state': '9f0a2c11735b9809',
    'basicsr.test.test_pipeline': '6500d8cc3c47150b',
    'basicsr.utils.options.parse_options': '347305bea18e85f0',
}
# How long a process of a distributed run waits for the others (a dead peer ends the wait with an error first).
DIST_TIMEOUT = datetime.timedelta(seconds=int(os.environ.get('RAMIT_DIST_TIMEOUT', 600)))


class PeerLostError(RunError):
    """A process of a distributed run ended (a node killed or lost): the others stop instead of waiting."""


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
    DatasetError naming its file (basicsr's own datasets fail with e.g. "'NoneType' object has no attribute"), and an
    LMDB that shrank while the run read it is named before a read could crash with SIGBUS."""

    def __init__(self, dataset: data.Dataset) -> None:
        self.dataset = dataset
        opt = getattr(dataset, 'opt', {})
        lmdb = (opt.get('io_backend') or {}).get('type') == 'lmdb'
        self.guard = LmdbGuard([v for k, v in opt.items() if k.startswith('dataroot') and v]) if lmdb else None

    def __getattr__(self, name: str):
        if name == 'dataset' or name.startswith('__'):  # not set yet (unpickling in a spawned worker), protocols
            raise AttributeError(name)
        return getattr(self.dataset, name)  # basicsr's validation reads dataset.opt

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        if self.guard is not None:
            self.guard.check()
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
    """The message for a sample that failed to load: the file (or LMDB key) that is not an image, else its files and
    the error."""
    opt = getattr(dataset, 'opt', {})
    label = dataset_label(opt)
    entry = getattr(dataset, 'paths', [None] * (index + 1))[index]
    files = ([(k[:-len('_path')], v) for k, v in entry.items() if k.endswith('_path')] if isinstance(entry, dict)
             else [('gt', entry)] if isinstance(entry, str) else [])
    lmdb = (opt.get('io_backend') or {}).get('type') == 'lmdb'
    for side, path in files:
        where = f"{opt.get(f'dataroot_{side}')} key {path!r}" if lmdb else path
        try:
            if lmdb:
                with lmdb_module.open(opt[f'dataroot_{side}'], readonly=True, lock=False) as env, env.begin() as txn:
                    value = txn.get(str(path).encode())
                if value is None:
                    return f'{label}: {where} is not in the database'
                decode(where, value)
            else:
                decode(path)
        except (ImageFileError, OSError, KeyError) as bad:
            return f'{label}: {bad}'
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return f"{label}: cannot load {' and '.join(str(p) for _, p in files) or f'sample {index}'} ({reason})"


# ------------------------------------------------------------------------------------------------------ options
def init_distributed(launcher: str, opt: dict) -> None:
    """The process group of a distributed run: NCCL on the GPU LOCAL_RANK names, gloo without CUDA."""
    if launcher == 'none':
        return
    if launcher == 'slurm':
        init_dist('slurm', **{k: v for k, v in (opt.get('dist_params') or {}).items() if k == 'port'})
        return
    for var in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        if var not in os.environ:
            raise OptionError(f'--launcher pytorch: {var} is not set; start the processes with torchrun '
                              '(torchrun --nproc_per_node=N $(which basicsr) train -opt X.yml --launcher pytorch)')
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', int(os.environ['RANK']) % torch.cuda.device_count())))
        dist.init_process_group(backend='nccl', timeout=DIST_TIMEOUT)
    else:
        dist.init_process_group(backend='gloo', timeout=DIST_TIMEOUT)


def finish_options(opt: dict, is_train: bool, auto_resume: bool, debug: bool, root: str) -> None:
    """What basicsr's parse_options adds to the options: rank, seed, phases, scale, paths, debug settings."""
    opt['dist'] = dist.is_available() and dist.is_initialized()
    opt['rank'], opt['world_size'] = get_dist_info()
    if opt.get('manual_seed') is None:
        seed = [random.randint(1, 10000)]
        if opt['dist']:  # one seed for all: exact resume replays every process from rank 0's state
            dist.broadcast_object_list(seed, src=0)
        opt['manual_seed'] = seed[0]
    set_random_seed(opt['manual_seed'] + opt['rank'])
    opt['auto_resume'] = auto_resume
    opt['is_train'] = is_train
    if debug and not opt['name'].startswith('debug'):
        opt['name'] = 'debug_' + opt['name']
    if opt.get('num_gpu', 'auto') == 'auto':
        opt['num_gpu'] = torch.cuda.device_count()
    opt['path'] = dict(opt.get('path') or {})
    opt['path'].setdefault('strict_load_g', True)
    # What basicsr reads with [] rather than .get(): the option schema's defaults.
    logger_defaults = dict(print_freq=100, save_checkpoint_freq=5000, use_tb_logger=False)
    opt['logger'] = dict(logger_defaults, **(opt.get('logger') or {}))
    if isinstance(opt.get('val'), dict):
        opt['val'].setdefault('suffix', None)
        opt['val'].setdefault('save_img', False)
    for phase, dataset in opt['datasets'].items():
        dataset['phase'] = phase.split('_')[0]
        for key, default in (('io_backend', {'type': 'disk'}), ('use_hflip', False), ('use_rot', False)):
            dataset.setdefault(key, default)
        if 'scale' in opt and opt['scale'] is not None:
            dataset['scale'] = opt['scale']
        for key in ('dataroot_gt', 'dataroot_lq'):
            if dataset.get(key) is not None:
                dataset[key] = osp.expanduser(dataset[key])
    for key, value in opt['path'].items():
        if value is not None and ('resume_state' in key or 'pretrain_network' in key):
            opt['path'][key] = osp.expanduser(value)
    folder = osp.join(root, 'experiments' if is_train else 'results', opt['name'])
    if is_train:
        opt['path'].update(experiments_root=folder, models=osp.join(folder, 'models'),
                           training_states=osp.join(folder, 'training_states'), log=folder,
                           visualization=osp.join(folder, 'visualization'))
        if 'debug' in opt['name']:
            if opt.get('val') is not None:
                opt['val']['val_freq'] = 8
            opt['logger']['print_freq'] = 1
            opt['logger']['save_checkpoint_freq'] = 8
    else:
        opt['path'].update(results_root=folder, log=folder, visualization=osp.join(folder, 'visualization'))


def check_registries(opt: dict, path: str) -> None:
    """The names the option file gives exist in basicsr's registries (with the plugin's parts registered)."""
    checks = [('model_type', opt['model_type'], MODEL_REGISTRY),
              ('network_g:type', opt['network_g'].get('type'), ARCH_REGISTRY)]
    checks += [(f'datasets:{phase}:type', d['type'], DATASET_REGISTRY) for phase, d in opt['datasets'].items()]
    checks += [(f'train:{k}:type', v['type'], LOSS_REGISTRY) for k, v in (opt.get('train') or {}).items()
               if k.endswith('_opt') and v]
    checks += [(f'val:metrics:{k}:type', v['type'], METRIC_REGISTRY)
               for k, v in ((opt.get('val') or {}).get('metrics') or {}).items()]
    for where, name, registry in checks:
        if name not in registry:
            raise OptionError(f"{path}: {where}: unknown {registry._name} {name!r}; valid: "
                              f"{', '.join(sorted(registry.keys()))}")
    if opt['num_gpu'] not in ('auto', 0) and not torch.cuda.is_available():
        raise OptionError(f"{path}: num_gpu: {opt['num_gpu']} but this machine has no CUDA GPU; use num_gpu: auto "
                          '(or 0)')


# ---------------------------------------------------------------------------------------------------- logging
def new_file_handler(log_file: str) -> logging.FileHandler:
    """A handler writing a new file: ``log_file``, or ``<name>_2.log``, ... when it exists. The name's timestamp is in
    seconds, so a run resumed within the same second would otherwise erase the log of the run before it (basicsr
    opens it with 'w')."""
    stem, ext = osp.splitext(log_file)
    for n in itertools.count(1):
        try:
            handler = logging.FileHandler(log_file if n == 1 else f'{stem}_{n}{ext}', 'x')
        except FileExistsError:
            continue
        handler.mode = 'a'  # were it reopened after a close, it must not refuse its own file
        return handler


def open_log(log_file: str, buffered: MemoryHandler) -> logging.Logger:
    """basicsr's logger writing into ``log_file`` from now on, with what was logged before it existed first."""
    logger = get_root_logger(logger_name='basicsr', log_level=logging.INFO)
    for handler in [h for h in logger.handlers if isinstance(h, logging.FileHandler)]:
        logger.removeHandler(handler)  # an earlier run in this process
        handler.close()
    if get_dist_info()[0] == 0:
        logger.setLevel(logging.INFO)
        file_handler = new_file_handler(log_file)
        file_handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s: %(message)s'))
        logger.addHandler(file_handler)
        buffered.setTarget(file_handler)
        buffered.flush()
    logger.removeHandler(buffered)
    buffered.close()
    return logger


def buffer_log() -> MemoryHandler:
    """Keep what basicsr's logger says until its log file exists (the options, datasets and network are checked
    before anything is written)."""
    logger = get_root_logger(logger_name='basicsr', log_level=logging.INFO)
    if get_dist_info()[0] == 0:
        logger.setLevel(logging.INFO)
    handler = MemoryHandler(capacity=100_000, flushLevel=logging.CRITICAL + 1)
    logger.addHandler(handler)
    return handler


def close_log() -> None:
    """Detach what a run added to basicsr's logger: its log file, closed (another process may run the experiment
    next: an open file in its folder means a running experiment), or the buffer of a run that stopped before it had
    one (it would keep every later message of this process)."""
    logger = get_root_logger(logger_name='basicsr')
    for handler in [h for h in logger.handlers if isinstance(h, (logging.FileHandler, MemoryHandler))]:
        logger.removeHandler(handler)
        handler.close()


def init_tb_loggers(opt: dict):
    """basicsr's: wandb before tensorboard, none in debug runs."""
    if (opt['logger'].get('wandb') or {}).get('project') and 'debug' not in opt['name']:
        init_wandb_logger(opt)
    if opt['logger'].get('use_tb_logger') and 'debug' not in opt['name']:
        return init_tb_logger(log_dir=osp.join(opt['root_path'], 'tb_logger', opt['name']))
    return None


# --------------------------------------------------------------------------------------------------- training
def load_resume_state(opt: dict) -> Optional[dict]:
    """The training state to continue from: with --auto_resume the newest usable saved iteration, else
    ``path:resume_state``; None to start anew. The run's seed becomes the saved run's."""
    if opt['auto_resume']:
        def note(line: str) -> None:
            if opt['rank'] == 0:
                print(f'--auto_resume: {line}', file=sys.stderr, flush=True)

        # What a kill during a save leaves (hidden '.part' files, checkpoint-sized): the first process removes it.
        for folder in (opt['path']['models'], opt['path']['training_states']) if opt['rank'] == 0 else ():
            stale = remove_stale_parts(folder)
            if stale:
                note(f'removed {len(stale)} unfinished temporary file(s) of killed saves in {folder}')
        skipped = []
        found = newest_usable(opt['path']['models'], opt['path']['training_states'],
                              lambda line: (skipped.append(line), note(line)))
        if found is not None and skipped:
            note(f'resuming from iteration {found[0]}, the newest complete checkpoint')
        if found is None:
            if os.path.isdir(opt['path']['training_states']) and os.listdir(opt['path']['training_states']):
                raise OptionError(f"--auto_resume: no usable checkpoint in {opt['path']['experiments_root']}; move the "
                                  'folder aside to start anew')
            return None
        opt['path']['resume_state'] = found[1]
    if not opt['path'].get('resume_state'):
        return None
    state = read_training_state(opt['path']['resume_state'])
    check_resume(opt, state['iter'])
    if state.get('manual_seed') is not None:
        opt['manual_seed'] = state['manual_seed']
    return state


def build_train_set(opt: dict) -> Tuple[data.Dataset, ResumableSampler]:
    """The training set and its sampler; OptionError when its batch cannot be formed from its samples."""
    data_opt = opt['datasets']['train']
    train_set = SeededDataset(build_dataset(data_opt))
    ratio = data_opt.get('dataset_enlarge_ratio', 1)
    sampler = ResumableSampler(train_set, opt['world_size'], opt['rank'], ratio, seed=opt['manual_seed'])
    per_step = data_opt['batch_size_per_gpu'] * (opt['world_size'] if opt['dist'] else max(1, opt['num_gpu']))
    if per_step > len(train_set) * ratio:
        raise OptionError(f"datasets:train:batch_size_per_gpu: {data_opt['batch_size_per_gpu']} per process x "
                          f"{opt['world_size']} process(es) is more than the {len(train_set) * ratio} samples of "
                          f"{dataset_label(data_opt)} per epoch ({len(train_set)} x dataset_enlarge_ratio {ratio}): "
                          'no batch can be formed')
    return train_set, sampler


@ending_process_group
def train(opt: dict, opt_path: str, launcher: str, auto_resume: bool, debug: bool, root: str) -> None:
    """basicsr.train.train_pipeline on checked options (see the module's docstring for what differs)."""
    try:
        faulthandler.enable()  # a crash in native code (a truncated LMDB mapped into memory) prints where it was
    except (AttributeError, ValueError):  # a sys.stderr without a file descriptor (captured, redirected to a buffer)
        if sys.__stderr__ is not None:
            faulthandler.enable(file=sys.__stderr__)
    opt['root_path'] = root
    init_distributed(launcher, opt)
    try:
        with launcher_stops('--auto_resume') if launcher != 'none' else contextlib.nullcontext():
            finish_options(opt, True, auto_resume, debug, root)
            check_registries(opt, opt_path)
            with experiment_lock(opt['path']['experiments_root'], opt['rank']):
                _train(opt, opt_path)
    finally:
        close_log()


def _train(opt: dict, opt_path: str) -> None:
    torch.backends.cudnn.benchmark = True
    buffered = buffer_log()
    resume_state = load_resume_state(opt)
    train_set, sampler = build_train_set(opt)
    val_sets = [SeededDataset(build_dataset(d)) for phase, d in opt['datasets'].items() if phase.startswith('val')]
    model = build_model(opt)  # loads and checks pretrain_network_g: a checkpoint that does not fit stops here
    model.check_memory()
    if resume_state is None:
        make_exp_dirs(opt)
        if opt['logger'].get('use_tb_logger') and 'debug' not in opt['name'] and opt['rank'] == 0:
            mkdir_and_rename(osp.join(opt['root_path'], 'tb_logger', opt['name']))
    copy_opt_file(opt_path, opt['path']['experiments_root'])
    logger = open_log(osp.join(opt['path']['log'], f"train_{opt['name']}_{get_time_str()}.log"), buffered)
    logger.info(get_env_info())
    logger.info(dict2str(opt))
    tb_logger = init_tb_loggers(opt)

    data_opt = opt['datasets']['train']
    train_loader = build_dataloader(train_set, data_opt, num_gpu=opt['num_gpu'], dist=opt['dist'], sampler=sampler,
                                    seed=opt['manual_seed'])
    # The workers' base seed, drawn at each epoch's start, comes from here instead of torch's global generator,
    # so starting an epoch leaves the model's random draws as they are (all augmentation is per sample).
    train_loader.generator = torch.Generator().manual_seed(opt['manual_seed'])
    val_loaders = [build_dataloader(v, opt['datasets'][p], num_gpu=opt['num_gpu'], dist=opt['dist'], sampler=None,
                                    seed=opt['manual_seed'])
                   for v, p in zip(val_sets, [p for p in opt['datasets'] if p.startswith('val')])]
    per_epoch = len(sampler) // train_loader.batch_size
    total_iters = int(opt['train']['total_iter'])
    enlarge = data_opt.get('dataset_enlarge_ratio', 1)
    logger.info(f'Training statistics: {len(train_set)} images x enlarge ratio {enlarge}, '
                f'batch {data_opt["batch_size_per_gpu"]} per process x {opt["world_size"]} process(es): {per_epoch} '
                f'iterations per epoch; {total_iters} iterations.')

    start_epoch = current_iter = 0
    if resume_state:
        model.resume_training(resume_state)
        start_epoch, current_iter = resume_state['epoch'], resume_state['iter']
        done = min(max(current_iter - start_epoch * per_epoch, 0), per_epoch)
        sampler.start_at(start_epoch, done * train_loader.batch_size)
        logger.info(f'Resuming training from epoch: {start_epoch}, iter: {current_iter}.')

    # eta counts the iterations after the current one: basicsr's MessageLogger subtracts one too many.
    msg_logger = MessageLogger(dict(opt, train=dict(opt['train'], total_iter=total_iters + 1)), current_iter,
                               tb_logger)
    prefetch_mode = data_opt.get('prefetch_mode')
    prefetcher = CUDAPrefetcher(train_loader, opt) if prefetch_mode == 'cuda' else CPUPrefetcher(train_loader)
    logger.info(f'Start training from epoch: {start_epoch}, iter: {current_iter}')
    data_timer, iter_timer = AvgTimer(), AvgTimer()
    start_time, epoch, validated = time.time(), start_epoch, None
    try:
        while current_iter < total_iters:
            sampler.set_epoch(epoch)
            prefetcher.reset()
            train_data = prefetcher.next()
            while train_data is not None and current_iter < total_iters:
                data_timer.record()
                current_iter += 1
                model.update_learning_rate(current_iter, warmup_iter=opt['train'].get('warmup_iter', -1))
                model.feed_data(train_data)
                model.optimize_parameters(current_iter)
                iter_timer.record()
                if current_iter == 1:
                    msg_logger.reset_start_time()
                if current_iter % opt['logger']['print_freq'] == 0:
                    log_vars = {'epoch': epoch, 'iter': current_iter, 'lrs': model.get_current_learning_rate(),
                                'time': iter_timer.get_avg_time(), 'data_time': data_timer.get_avg_time()}
                    log_vars.update(model.get_current_log())
                    msg_logger(log_vars)
                if current_iter % opt['logger']['save_checkpoint_freq'] == 0:
                    logger.info('Saving models and training states.')
                    model.save(epoch, current_iter)
                if opt.get('val') is not None and current_iter % opt['val']['val_freq'] == 0:
                    for val_loader in val_loaders:
                        model.validation(val_loader, current_iter, tb_logger, opt['val']['save_img'])
                    validated = current_iter
                data_timer.start()
                iter_timer.start()
                train_data = prefetcher.next() if current_iter < total_iters else None
            epoch += 1
    finally:
        stop_loader_workers(prefetcher.loader)

    logger.info(f'End of training. Time consumed: {datetime.timedelta(seconds=int(time.time() - start_time))}')
    logger.info('Save the latest model.')
    model.save(epoch=-1, current_iter=-1)  # -1 stands for the latest
    if opt.get('val') is not None and validated != current_iter:
        for val_loader in val_loaders:
            model.validation(val_loader, current_iter, tb_logger, opt['val']['save_img'])
    if tb_logger:
        tb_logger.close()


# ------------------------------------------------------------------------------------------------------- testing
@ending_process_group
def test(opt: dict, opt_path: str, launcher: str, root: str) -> None:
    """basicsr.test.test_pipeline on checked options."""
    init_distributed(launcher, opt)
    try:
        finish_options(opt, False, False, False, root)
        check_registries(opt, opt_path)
        with experiment_lock(opt['path']['results_root'], opt['rank']):
            _test(opt)
    finally:
        close_log()


def _test(opt: dict) -> None:
    torch.backends.cudnn.benchmark = True
    buffered = buffer_log()
    test_sets = [SeededDataset(build_dataset(d)) for _, d in sorted(opt['datasets'].items())]
    model = build_model(opt)
    make_exp_dirs(opt)
    logger = open_log(osp.join(opt['path']['log'], f"test_{opt['name']}_{get_time_str()}.log"), buffered)
    logger.info(get_env_info())
    logger.info(dict2str(opt))
    for test_set, (_, dataset_opt) in zip(test_sets, sorted(opt['datasets'].items())):
        loader = build_dataloader(test_set, dataset_opt, num_gpu=opt['num_gpu'], dist=opt['dist'], sampler=None,
                                  seed=opt['manual_seed'])
        logger.info(f"Number of test images in {dataset_opt['name']}: {len(test_set)}")
        logger.info(f"Testing {dataset_opt['name']}...")
        model.validation(loader, current_iter=opt['name'], tb_logger=None, save_img=opt['val']['save_img'])


def mirrored_hashes() -> dict:
    """The current hashes of the basicsr functions in BASICSR_MIRRORED (what a test compares)."""
    found = {}
    for name in BASICSR_MIRRORED:
        module, _, function = name.rpartition('.')
        source = inspect.getsource(getattr(importlib.import_module(module), function))
        found[name] = hashlib.sha256(source.encode()).hexdigest()[:16]
    return found


@contextlib.contextmanager
def launcher_stops(resume_hint: str) -> Iterator[None]:
    """In a distributed run, the launcher's SIGTERM (torchrun stops its workers when it loses another node or the
    rendezvous) ends this process with one line instead of a traceback."""
    def stop(signum, frame) -> None:
        raise PeerLostError('stopped by the launcher: another process or node of the distributed run ended, or the '
                            f'rendezvous was lost; restart every node with {resume_hint} to continue from the last '
                            'checkpoint')

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def peer_lost(err: BaseException) -> Optional[str]:
    """The one line for a collective that failed because another process of the run ended, or None."""
    text = str(err)
    markers = ('Connection closed by peer', 'Connection reset by peer', 'Broken pipe', 'NCCL communicator was aborted',
               'failed to recv', 'Socket Timeout', 'Connection refused')
    if dist.is_available() and any(m in text for m in markers):
        return ('another process of the distributed run ended (a node stopped or was killed); this one stops too. '
                'Restart every node with --auto_resume to continue from the last checkpoint')
    return None
