"""`ramit mm-train` / `ramit mm-test`: RAMiT with mmengine's Runner from a Python config (OpenMMLab's interface).

Before the Runner exists (it creates the work dir and logs at length) the config is read, its key numbers and the
generator's arguments are checked, the datasets the run will use are built once (a missing folder or LMDB is one
line naming it), mm-test's checkpoint is read and checked against the config's network, and mm-train's resume
checkpoint is read; only then is the work dir locked (a second run into it is refused) and the Runner built.
"""
import argparse
import contextlib
import copy
import itertools
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import ramit_plugin.mmengine_import  # noqa: F401  (first: imports mmengine one process at a time)
from mmengine.config import Config, DictAction
from mmengine.model import is_model_wrapper
from mmengine.registry import DATASETS, DefaultScope
from mmengine.runner import Runner

from ramit.checkpoint import check_fit, check_weights, load_weights, read_checkpoint
from ramit.errors import OptionError, RamitError
from ramit.fileio import exclusive_lock, make_folder
from ramit.hparams import resolve_hparams
from ramit.hub import resolve_weights
from ramit.training import NonFiniteLossError, ending_process_group, finite_checkpoint_note
from ramit_plugin.mm.runtime import (ensure_plugin_hooks, last_finite_checkpoint, latest_resumable,
                                     prepare_distributed, read_resume_checkpoint, stop_runner_workers,
                                     wait_for_own_log_dir)
from ramit_plugin.pipeline import PeerLostError, launcher_stops, peer_lost

from .runtime import set_threads

_RUNNERS_BUILT = itertools.count()
# (config key, least value): what a Runner would accept and then quietly do nothing with, or fail on mid-run.
COUNTS = (('train_cfg.max_iters', 1), ('train_cfg.val_interval', 1), ('train_dataloader.batch_size', 1),
          ('train_dataloader.num_workers', 0), ('val_dataloader.batch_size', 1), ('test_dataloader.batch_size', 1))


@contextlib.contextmanager
def config_errors() -> Iterator[None]:
    """Turn mmengine's KeyError (unknown registry type) and the ValueErrors and TypeErrors of building into
    one-line OptionErrors (a RamitError passes as it is)."""
    try:
        yield
    except RamitError:
        raise
    except (KeyError, ValueError, TypeError) as err:
        text = str(err).strip('"\'').splitlines()
        raise OptionError(text[0] if text else type(err).__name__) from None


def launcher_rank(launcher: str) -> int:
    """This process's rank, before the launcher's process group exists (torchrun sets RANK, srun SLURM_PROCID)."""
    if launcher == 'none':
        return 0
    return int(os.environ.get('RANK', os.environ.get('SLURM_PROCID', '0')))


def load_config(args: argparse.Namespace):
    """Read CONFIG and apply --cfg-options, --work-dir and --launcher (gloo on CPU-only machines)."""
    path = Path(args.config)
    try:
        cfg = Config.fromfile(str(path))
    except Exception as err:  # syntax errors, bad _base_ paths, failed custom_imports
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise OptionError(f'cannot read config {path}: {first}') from None
    # mmengine's own --cfg-options parsing (lists, tuples, numbers), applied after argparse kept the strings.
    options = argparse.Namespace()
    try:
        DictAction(['--cfg-options'], 'cfg_options')(None, options, args.cfg_options)
    except ValueError:
        raise OptionError(f'--cfg-options {" ".join(args.cfg_options)}: each entry must be KEY=VALUE') from None
    cfg.merge_from_dict(options.cfg_options)
    cfg.setdefault('default_scope', 'ramit_plugin')
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = os.path.join('work_dirs', path.stem)
    cfg.launcher = args.launcher
    check_numbers(cfg)
    check_generator(cfg)
    ensure_plugin_hooks(cfg)
    if args.launcher != 'none':
        os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
        prepare_distributed(cfg)
    return cfg


def check_numbers(cfg) -> None:
    """The counts and the learning rate a run needs, whole and in range (a --cfg-options typo otherwise trains
    nothing, exit 0, or fails mid-run)."""
    for key, least in COUNTS:
        node = cfg
        for part in key.split('.'):
            node = node.get(part) if hasattr(node, 'get') else None
        if node is not None and (isinstance(node, bool) or not isinstance(node, int) or node < least):
            raise OptionError(f'{key}: {node!r} must be a whole number of at least {least}')
    lr = ((cfg.get('optim_wrapper') or {}).get('optimizer') or {}).get('lr')
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < 1e3):
        raise OptionError(f'optim_wrapper.optimizer.lr: {lr!r} must be a positive learning rate (e.g. 4e-4)')


def generator_arguments(cfg) -> dict:
    """The RAMiT(...) arguments of the config's generator (checked with resolve_hparams, nothing built)."""
    generator = dict((cfg.get('model') or {}).get('generator') or {})
    if str(generator.pop('type', '')).split('.')[-1] != 'RAMiT':
        return {}
    generator.pop('fast', None)
    try:
        resolve_hparams(**generator)
    except (ValueError, TypeError) as err:
        raise OptionError(f'model.generator: {err}') from None
    return generator


def check_generator(cfg) -> None:
    """A wrong variant or hyper-parameter is one line before anything is created."""
    generator_arguments(cfg)


def check_data(cfg, loaders: Sequence[str]) -> None:
    """Build (and list) the dataset of each configured dataloader in ``loaders``, as the Runner would later."""
    with config_errors(), DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        for key in loaders:
            if cfg.get(key):
                dataset = DATASETS.build(copy.deepcopy(cfg[key]['dataset']))
                if hasattr(dataset, 'full_init'):  # a lazy_init dataset lists its files only here
                    dataset.full_init()


def build_runner(cfg):
    """Runner.from_cfg; a wrong type, variant or option in the config becomes a one-line OptionError."""
    run = next(_RUNNERS_BUILT)
    if run and not cfg.get('experiment_name'):
        # mmengine keys its logger, visualizer and message hub by experiment name + a timestamp in seconds: a
        # second Runner in this process (tests, notebooks) could otherwise write into the first one's files.
        cfg.experiment_name = f'{Path(cfg.filename).stem}_run{run}'
    wait_for_own_log_dir(cfg.work_dir)
    with config_errors():
        runner = Runner.from_cfg(cfg)
    runner.logger.addFilter(MmengineDeprecations())
    return runner


@contextlib.contextmanager
def work_dir_lock(work_dir: str, launcher: str) -> Iterator[None]:
    """Hold ``<work_dir>/.lock`` in the first process: a second run into the same work dir is refused (also when
    the lock file was deleted while the first one runs: its log is open in the work dir)."""
    if launcher_rank(launcher) != 0:
        yield
        return
    make_folder(work_dir)
    with exclusive_lock(os.path.join(work_dir, '.lock'), f'work dir {work_dir}', guarded=work_dir):
        yield


class MmengineDeprecations(logging.Filter):
    """Drop the notices mmengine 0.10.7 logs about its own FileClient/HardDiskBackend whenever its CheckpointHook
    starts: they come through its logger (print_log), which warnings filters do not reach."""

    NOTICE = re.compile(r'"(FileClient|HardDiskBackend)" (will be deprecated|is the alias)')

    def filter(self, record: logging.LogRecord) -> bool:
        """False for those notices."""
        return not self.NOTICE.match(str(record.msg))


@contextlib.contextmanager
def quiet_deprecations() -> Iterator[None]:
    """mmengine 0.10.7's Python warnings about its own FileClient/HardDiskBackend: noise for our users (the notices
    it logs are dropped by the Runner's logger filter, MmengineDeprecations)."""
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message=r'.*(FileClient|HardDiskBackend|file_client).*', category=Warning)
        warnings.filterwarnings('ignore', message=r'"(FileClient|HardDiskBackend)" .*', category=Warning)
        yield


@contextlib.contextmanager
def run_errors(work_dir: str) -> Iterator[None]:
    """A diverged run names its last usable checkpoint; a lost peer of a distributed run is one line."""
    try:
        yield
    except NonFiniteLossError as err:
        note = finite_checkpoint_note(last_finite_checkpoint(work_dir), 'resume with ramit mm-train ... --resume')
        raise NonFiniteLossError(str(err).replace('see the work dir for the last checkpoint', note)) from None
    except RuntimeError as err:
        reason = peer_lost(err)
        if reason is None:
            raise
        raise PeerLostError(reason.replace('--auto_resume', '--resume')) from None


@ending_process_group
def run_train(args: argparse.Namespace, prog: str) -> int:
    """Train (and validate) with mmengine's Runner; --resume continues from the work dir's last checkpoint."""
    cfg = load_config(args)
    check_data(cfg, ('train_dataloader', 'val_dataloader') if cfg.get('val_cfg') else ('train_dataloader',))
    if args.resume not in (None, 'auto'):
        read_resume_checkpoint(args.resume)
    stops = launcher_stops('--resume') if args.launcher != 'none' else contextlib.nullcontext()
    with stops, work_dir_lock(cfg.work_dir, args.launcher), quiet_deprecations(), run_errors(cfg.work_dir):
        if args.resume == 'auto':
            # Nothing saved yet: the run starts from the beginning, as mmengine's own --resume does.
            cfg.load_from = latest_resumable(cfg.work_dir)
            cfg.resume = cfg.load_from is not None
        elif args.resume:
            cfg.resume, cfg.load_from = True, args.resume
        set_threads(args.threads)
        runner = build_runner(cfg)
        try:
            runner.train()
        finally:
            stop_runner_workers(runner)
    return 0


@ending_process_group
def run_test(args: argparse.Namespace, prog: str) -> int:
    """Test a checkpoint with the config's test dataloader and evaluator; prints the metrics."""
    cfg = load_config(args)
    # Weights go straight into the network below, in every form ramit.checkpoint reads; so a warm-start
    # source (model.pretrained of the x3/x4 configs) is neither needed nor loaded.
    weights, _ = resolve_weights(args.checkpoint, option='--checkpoint')
    state_dict, description, _ = read_checkpoint(weights)
    arguments = generator_arguments(cfg)
    if arguments:
        check_fit(arguments, state_dict, description, args.checkpoint)
    check_weights(state_dict, args.checkpoint)  # NaN/inf or integer weights: refused before the Runner starts
    check_data(cfg, ('test_dataloader',))
    cfg.load_from, cfg.resume = None, False
    if 'pretrained' in cfg.model:
        cfg.model.pretrained = None
    set_threads(args.threads)
    with quiet_deprecations():
        runner = build_runner(cfg)
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        load_weights(model.generator, state_dict, label=args.checkpoint)
        try:
            metrics = runner.test()
        finally:
            stop_runner_workers(runner)
    print(' '.join(f'{name}: {value:.4f}' for name, value in metrics.items()))
    return 0
