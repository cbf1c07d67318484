"""`basicsr train` / `basicsr test`: BasicSR's pipelines with the plugin (``ramit_plugin.pipeline``), run from the
current directory so that experiments/, tb_logger/ and results/ land where BasicSR users expect them. The option
file was read and checked by ``ramit_cli.prechecks`` before basicsr loaded."""
import argparse
import os

import torch

from ramit.errors import OptionError
from ramit.fileio import output_error
from ramit_plugin.pipeline import PeerLostError, peer_lost, test, train

from .runtime import set_threads


def run_train(args: argparse.Namespace, prog: str) -> int:
    """`basicsr train -opt X.yml ...`."""
    return run_pipeline(args, is_train=True)


def run_test(args: argparse.Namespace, prog: str) -> int:
    """`basicsr test -opt X.yml ...`."""
    return run_pipeline(args, is_train=False)


def run_pipeline(args: argparse.Namespace, is_train: bool) -> int:
    """Run the pipeline on the checked options; a full disk or a lost peer becomes one line."""
    if args.launcher == 'slurm' and not torch.cuda.is_available():
        raise OptionError('--launcher slurm needs CUDA GPUs; on CPUs start the processes with torchrun and '
                          '--launcher pytorch')
    set_threads(args.threads)
    try:
        if is_train:
            train(args.options, args.opt, args.launcher, args.auto_resume, args.debug, os.getcwd())
        else:
            test(args.options, args.opt, args.launcher, os.getcwd())
    except OSError as err:  # a full disk or an unwritable folder, wherever basicsr or the model writes
        converted = output_error(err.filename or os.getcwd(), err)
        if converted is None:
            raise
        raise converted from None
    except RuntimeError as err:
        reason = peer_lost(err)
        if reason is None:
            raise
        raise PeerLostError(reason) from None
    return 0
