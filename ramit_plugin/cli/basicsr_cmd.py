"""`basicsr train` / `basicsr test`: BasicSR's own pipelines with the plugin registered.

The option file is checked first (``ramit_plugin.option_checks``: one-line errors, exit 2, nothing written); then
basicsr.train.train_pipeline / basicsr.test.test_pipeline run with the current directory as root, so experiments/,
tb_logger/ and results/ land where BasicSR users expect them, on the checked options, with basicsr's unsafe YAML
loading, CUDA-only distributed init, resume loading and data loading swapped for the plugin's
(``ramit_plugin.basicsr_compat``). While it runs, the experiment (results) folder is locked: a second start of the
same experiment is refused instead of moving the running one's folder aside.
"""
import argparse
import contextlib
import os
import sys
from typing import Iterator
from unittest import mock

from ..basicsr_compat import patched_basicsr
from ..fileio import exclusive_lock, make_folder, output_error
from ..option_checks import apply_force_yml, check_options, load_options
from .runtime import launcher_rank, set_threads


def run_train(args: argparse.Namespace, prog: str) -> int:
    """`basicsr train -opt X.yml ...`: BasicSR's train_pipeline with the plugin."""
    return run_pipeline(args, prog, is_train=True)


def run_test(args: argparse.Namespace, prog: str) -> int:
    """`basicsr test -opt X.yml ...`: BasicSR's test_pipeline with the plugin."""
    return run_pipeline(args, prog, is_train=False)


@contextlib.contextmanager
def experiment_lock(folder: str, launcher: str) -> Iterator[None]:
    """Hold ``<parent>/.<name>.lock`` beside the experiment folder (in the first process of a distributed run).

    Beside, not inside: basicsr moves an existing experiment folder aside, and the lock must not move with it.
    """
    if launcher_rank(launcher) != 0:
        yield
        return
    parent, name = os.path.split(folder)
    make_folder(parent)
    with exclusive_lock(os.path.join(parent, f'.{name}.lock'), folder):
        yield


def run_pipeline(args: argparse.Namespace, prog: str, is_train: bool) -> int:
    """Check the options, then run basicsr's pipeline on them with the plugin's replacements."""
    opt = load_options(args.opt)
    apply_force_yml(opt, args.force_yml or [], args.opt)
    check_options(opt, args.opt, is_train, args.launcher)
    set_threads(args.threads)

    name = f"debug_{opt['name']}" if args.debug and not opt['name'].startswith('debug') else opt['name']
    folder = os.path.join('experiments' if is_train else 'results', name)
    # --force_yml is applied above and not passed on: basicsr evaluates its values with eval() and exec().
    basicsr_argv = [sys.argv[0] if sys.argv else prog, '-opt', args.opt, '--launcher', args.launcher,
                    '--local_rank', str(args.local_rank)]
    basicsr_argv += ['--auto_resume'] if getattr(args, 'auto_resume', False) else []
    basicsr_argv += ['--debug'] if args.debug else []
    if is_train:
        from basicsr.train import train_pipeline as pipeline
    else:
        from basicsr.test import test_pipeline as pipeline
    try:
        with experiment_lock(folder, args.launcher), patched_basicsr(opt), \
                mock.patch.object(sys, 'argv', basicsr_argv):
            pipeline(os.getcwd())
    except OSError as err:  # a full disk or an unwritable folder, wherever basicsr or the model writes
        converted = output_error(err.filename or folder, err)
        if converted is None:
            raise
        raise converted from None
    finally:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0
