"""`ramit mm-train` / `ramit mm-test`: RAMiT with mmengine's Runner from a Python config (OpenMMLab's interface)."""
import argparse
import functools
import itertools
import os
import sys
from pathlib import Path
from typing import Callable, List

from ..data.errors import DatasetError

LAUNCHERS = ('none', 'pytorch', 'slurm')
_RUNNERS_BUILT = itertools.count()


class CommandError(Exception):
    """Bad input the command reports as one line and exit status 2."""


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    """Arguments both commands share: CONFIG, --work-dir, --cfg-options, --launcher."""
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument('config', help='mmengine Python config, e.g. options/mmengine_RAMiT_SRx2.py')
    parser.add_argument('--work-dir', help='folder for logs and checkpoints (default: work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={}, metavar='KEY=VALUE',
                        help='override config keys, e.g. train_cfg.max_iters=1000 model.generator.variant=RAMiT-1')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none', help='job launcher (default: none)')
    # torch.distributed.launch passes --local_rank (older) or --local-rank; torchrun sets LOCAL_RANK instead.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)
    return parser


def _load_config(args: argparse.Namespace):
    """Read CONFIG and apply --cfg-options, --work-dir and --launcher (gloo on CPU-only machines)."""
    from mmengine.config import Config

    from ..mm.runtime import ensure_weights_only_hook, prepare_distributed

    path = Path(args.config)
    if not path.is_file():
        raise CommandError(f'config file not found: {path}')
    try:
        cfg = Config.fromfile(str(path))
    except Exception as err:  # syntax errors, bad _base_ paths, failed custom_imports
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CommandError(f'cannot read config {path}: {first}') from None
    cfg.merge_from_dict(args.cfg_options)
    cfg.setdefault('default_scope', 'ramit_plugin')
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = os.path.join('work_dirs', path.stem)
    cfg.launcher = args.launcher
    ensure_weights_only_hook(cfg)
    if args.launcher != 'none':
        os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
        try:
            prepare_distributed(cfg)
        except RuntimeError as err:
            raise CommandError(str(err)) from None
    return cfg


def _build_runner(cfg):
    """Runner.from_cfg; a wrong type, variant or option in the config becomes a one-line CommandError."""
    from mmengine.runner import Runner

    run = next(_RUNNERS_BUILT)
    if run and not cfg.get('experiment_name'):
        # mmengine keys its logger, visualizer and message hub by experiment name + a timestamp in seconds: a
        # second Runner in this process (tests, notebooks) could otherwise write into the first one's files.
        cfg.experiment_name = f'{Path(cfg.filename).stem}_run{run}'
    try:
        return Runner.from_cfg(cfg)
    except (KeyError, ValueError) as err:  # unknown registry type / RAMiT's and the datasets' option checks
        raise CommandError(str(err).strip('"\'')) from None


def _one_line_errors(command: Callable[[List[str], str], int]) -> Callable[[List[str], str], int]:
    """Turn a CommandError of ``command`` into one line on stderr naming the command, and exit status 2."""
    @functools.wraps(command)
    def run(argv: List[str], prog: str) -> int:
        try:
            return command(argv, prog)
        except (CommandError, DatasetError) as err:  # DatasetError: data found bad once the loops read it
            print(f'{prog}: error: {err}', file=sys.stderr)
            return 2
    return run


@_one_line_errors
def train_main(argv: List[str], prog: str) -> int:
    """Train (and validate) with mmengine's Runner; --resume continues from the work dir's last checkpoint."""
    parser = _parser(prog, "Train RAMiT with mmengine's Runner from a Python config.")
    parser.add_argument('--resume', nargs='?', const='auto', metavar='CHECKPOINT',
                        help="resume training: from the work dir's latest checkpoint, or from CHECKPOINT")
    args = parser.parse_args(argv)
    cfg = _load_config(args)
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume:
        cfg.resume, cfg.load_from = True, args.resume
    _build_runner(cfg).train()
    return 0


@_one_line_errors
def test_main(argv: List[str], prog: str) -> int:
    """Test a checkpoint with the config's test dataloader and evaluator; prints the metrics."""
    parser = _parser(prog, "Test a RAMiT checkpoint with mmengine's Runner from a Python config.")
    parser.add_argument('--checkpoint', required=True,
                        help="weights: the authors' raw state dict, a BasicSR or an mmengine checkpoint")
    args = parser.parse_args(argv)
    cfg = _load_config(args)
    # Weights go straight into the network below, in every format ramit_plugin.checkpoint reads; so a warm-start
    # source (model.pretrained of the x3/x4 configs) is neither needed nor loaded.
    cfg.load_from, cfg.resume = None, False
    if 'pretrained' in cfg.model:
        cfg.model.pretrained = None
    from mmengine.model import is_model_wrapper

    from ..checkpoint import load_checkpoint

    runner = _build_runner(cfg)
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    try:
        load_checkpoint(model.generator, args.checkpoint)
    except (FileNotFoundError, ValueError) as err:
        raise CommandError(str(err)) from None
    metrics = runner.test()
    print(' '.join(f'{name}: {value:.4f}' for name, value in metrics.items()))
    return 0
