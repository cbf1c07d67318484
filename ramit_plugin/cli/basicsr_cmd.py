"""`basicsr train` / `basicsr test`: BasicSR's own pipelines with the plugin registered.

The option file is checked first (``ramit_plugin.option_checks``: one-line errors, exit 2, nothing written); then
basicsr.train.train_pipeline / basicsr.test.test_pipeline run with the current directory as root, so experiments/,
tb_logger/ and results/ land where BasicSR users expect them, with basicsr's unsafe YAML loader, CUDA-only
distributed init and CUDA resume swapped for the plugin's (``ramit_plugin.basicsr_compat``).
"""
import argparse
import os
import sys
from unittest import mock

from ..basicsr_compat import patched_basicsr
from ..option_checks import apply_force_yml, check_options, load_options
from .runtime import set_threads


def run_train(args: argparse.Namespace, prog: str) -> int:
    """`basicsr train -opt X.yml ...`: BasicSR's train_pipeline with the plugin."""
    return run_pipeline(args, prog, is_train=True)


def run_test(args: argparse.Namespace, prog: str) -> int:
    """`basicsr test -opt X.yml ...`: BasicSR's test_pipeline with the plugin."""
    return run_pipeline(args, prog, is_train=False)


def run_pipeline(args: argparse.Namespace, prog: str, is_train: bool) -> int:
    """Check the options, then run basicsr's pipeline with the plugin's replacements."""
    opt = load_options(args.opt)
    apply_force_yml(opt, args.force_yml or [], args.opt)
    check_options(opt, args.opt, is_train, args.launcher)
    set_threads(args.threads)

    basicsr_argv = [sys.argv[0] if sys.argv else prog, '-opt', args.opt, '--launcher', args.launcher,
                    '--local_rank', str(args.local_rank)]
    basicsr_argv += ['--auto_resume'] if getattr(args, 'auto_resume', False) else []
    basicsr_argv += ['--debug'] if args.debug else []
    basicsr_argv += ['--force_yml', *args.force_yml] if args.force_yml else []
    if is_train:
        from basicsr.train import train_pipeline as pipeline
    else:
        from basicsr.test import test_pipeline as pipeline
    try:
        with patched_basicsr(), mock.patch.object(sys, 'argv', basicsr_argv):
            pipeline(os.getcwd())
    finally:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0
