"""`ramit mm-train` / `ramit mm-test`: RAMiT with mmengine's Runner from a Python config (OpenMMLab's interface).

Before the Runner exists (it creates the work dir and logs at length), the config is read, the datasets the run
will use are built once (so a missing folder or LMDB is one line naming it), mm-test's checkpoint and the checkpoint
mm-train resumes from are read, and mm-train locks its work dir (a second run into it is refused).
"""
import argparse
import contextlib
import copy
import itertools
import os
from pathlib import Path
from typing import Iterator, Sequence

from ..checkpoint import load_checkpoint, read_checkpoint
from ..errors import OptionError, RamitError
from ..fileio import exclusive_lock, make_folder
from .runtime import launcher_rank, set_threads

_RUNNERS_BUILT = itertools.count()


@contextlib.contextmanager
def config_errors() -> Iterator[None]:
    """Turn mmengine's KeyError (unknown registry type) and the plugin's ValueErrors while building into one-line
    OptionErrors (a RamitError passes as it is)."""
    try:
        yield
    except RamitError:
        raise
    except (KeyError, ValueError) as err:
        raise OptionError(str(err).strip('"\'')) from None


def load_config(args: argparse.Namespace):
    """Read CONFIG and apply --cfg-options, --work-dir and --launcher (gloo on CPU-only machines)."""
    from mmengine.config import Config, DictAction

    from ..mm.runtime import ensure_plugin_hooks, prepare_distributed

    path = Path(args.config)
    if not path.is_file():
        raise OptionError(f'config file not found: {path}')
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
    ensure_plugin_hooks(cfg)
    if args.launcher != 'none':
        os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
        try:
            prepare_distributed(cfg)
        except RuntimeError as err:
            raise OptionError(str(err)) from None
    return cfg


def check_data(cfg, loaders: Sequence[str]) -> None:
    """Build (and list) the dataset of each configured dataloader in ``loaders``, as the Runner would later."""
    from mmengine.registry import DATASETS, DefaultScope

    with config_errors(), DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        for key in loaders:
            if cfg.get(key):
                dataset = DATASETS.build(copy.deepcopy(cfg[key]['dataset']))
                if hasattr(dataset, 'full_init'):  # a lazy_init dataset lists its files only here
                    dataset.full_init()


def build_runner(cfg):
    """Runner.from_cfg; a wrong type, variant or option in the config becomes a one-line OptionError."""
    from mmengine.runner import Runner

    run = next(_RUNNERS_BUILT)
    if run and not cfg.get('experiment_name'):
        # mmengine keys its logger, visualizer and message hub by experiment name + a timestamp in seconds: a
        # second Runner in this process (tests, notebooks) could otherwise write into the first one's files.
        cfg.experiment_name = f'{Path(cfg.filename).stem}_run{run}'
    with config_errors():
        return Runner.from_cfg(cfg)


@contextlib.contextmanager
def work_dir_lock(work_dir: str, launcher: str) -> Iterator[None]:
    """Hold ``<work_dir>/.lock`` in the first process: a second run into the same work dir is refused."""
    if launcher_rank(launcher) != 0:
        yield
        return
    make_folder(work_dir)
    with exclusive_lock(os.path.join(work_dir, '.lock'), f'work dir {work_dir}'):
        yield


def run_train(args: argparse.Namespace, prog: str) -> int:
    """Train (and validate) with mmengine's Runner; --resume continues from the work dir's last checkpoint."""
    from ..mm.runtime import latest_resumable, read_resume_checkpoint

    cfg = load_config(args)
    check_data(cfg, ('train_dataloader', 'val_dataloader') if cfg.get('val_cfg') else ('train_dataloader',))
    with work_dir_lock(cfg.work_dir, args.launcher):
        if args.resume == 'auto':
            # Nothing saved yet: the run starts from the beginning, as mmengine's own --resume does.
            cfg.load_from = latest_resumable(cfg.work_dir)
            cfg.resume = cfg.load_from is not None
        elif args.resume:
            read_resume_checkpoint(args.resume)
            cfg.resume, cfg.load_from = True, args.resume
        set_threads(args.threads)
        build_runner(cfg).train()
    return 0


def run_test(args: argparse.Namespace, prog: str) -> int:
    """Test a checkpoint with the config's test dataloader and evaluator; prints the metrics."""
    from mmengine.model import is_model_wrapper

    cfg = load_config(args)
    check_data(cfg, ('test_dataloader',))
    # Weights go straight into the network below, in every form ramit_plugin.checkpoint reads; so a warm-start
    # source (model.pretrained of the x3/x4 configs) is neither needed nor loaded.
    state_dict, _ = read_checkpoint(args.checkpoint)
    cfg.load_from, cfg.resume = None, False
    if 'pretrained' in cfg.model:
        cfg.model.pretrained = None
    set_threads(args.threads)
    runner = build_runner(cfg)
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    load_checkpoint(model.generator, state_dict, label=args.checkpoint)
    metrics = runner.test()
    print(' '.join(f'{name}: {value:.4f}' for name, value in metrics.items()))
    return 0
