"""`basicsr train` / `basicsr test`: BasicSR's own pipelines with the plugin registered and its CPU traps fixed.

The option file is read with a safe YAML loader and checked before BasicSR starts (one-line errors, exit 2,
nothing written); then basicsr.train.train_pipeline / basicsr.test.test_pipeline run with the current directory
as root, so experiments/, tb_logger/ and results/ land where BasicSR users expect them. While they run, three
basicsr 1.4.2 functions are swapped for plugin versions: its YAML loader (PyYAML's full Loader -> SafeLoader),
its distributed init (CUDA-only -> gloo on CPU machines) and its resume-state loading (mapped to CUDA ->
CPU with weights_only).
"""
import argparse
import contextlib
import copy
import os
import re
import struct
import sys
from os import path as osp
from typing import Dict, Iterator, List, Optional, Tuple
from unittest import mock

import yaml

USAGE_NOTES = """\
BasicSR's option keys apply (see the option files in options/). Paths in the file are relative to the
current directory; experiments/, tb_logger/ and results/ are written there.

distributed training (GPUs use NCCL, CPU-only machines gloo):
  torchrun --nproc_per_node=2 $(which basicsr) train -opt X.yml --launcher pytorch
resume the last saved state of an experiment:
  basicsr train -opt X.yml --auto_resume
override options without editing the file:
  basicsr train -opt X.yml --force_yml train:total_iter=1000 datasets:train:batch_size_per_gpu=8
"""
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
SCHEDULERS = ('MultiStepLR', 'MultiStepRestartLR', 'CosineAnnealingRestartLR')  # what basicsr 1.4.2 builds
SIZE_CHECKS_NON_PNG = 8  # non-PNG pairs are decoded to learn their size, so only the first few are checked


class OptionError(ValueError):
    """A problem with the option file or the data it names; printed as one line."""


# ------------------------------------------------------------------------------------------------ command line
def build_parser(prog: str, is_train: bool) -> argparse.ArgumentParser:
    """Argument parser mirroring basicsr's parse_options, with help text."""
    verb = 'Train' if is_train else 'Test'
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=USAGE_NOTES,
        description=f"{verb} with BasicSR's {'train' if is_train else 'test'}_pipeline from an option YAML, with "
                    'the RAMiT plugin registered (network_g type RAMiT, model_type RAMiTModel).')
    parser.add_argument('-opt', required=True, metavar='X.yml', help='option YAML file')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help='none: one process; pytorch: started by torchrun; slurm: started by srun (GPUs)')
    if is_train:
        parser.add_argument('--auto_resume', action='store_true',
                            help="continue from the newest state in experiments/<name>/training_states")
    parser.add_argument('--debug', action='store_true',
                        help="prefix the name with debug_: validate every 8 iterations, log every one, no tensorboard")
    parser.add_argument('--local_rank', '--local-rank', dest='local_rank', type=int, default=0,
                        help='set by torch.distributed.launch; torchrun passes it in the environment instead')
    parser.add_argument('--force_yml', nargs='+', default=None, metavar='KEY:SUB=VALUE',
                        help='override options, e.g. train:ema_decay=0.999 datasets:train:num_worker_per_gpu=0')
    return parser


def train_main(argv: List[str], prog: str = 'basicsr train') -> int:
    """`basicsr train -opt X.yml ...`: BasicSR's train_pipeline with the plugin."""
    return run_pipeline(argv, prog, is_train=True)


def test_main(argv: List[str], prog: str = 'basicsr test') -> int:
    """`basicsr test -opt X.yml ...`: BasicSR's test_pipeline with the plugin."""
    return run_pipeline(argv, prog, is_train=False)


def run_pipeline(argv: List[str], prog: str, is_train: bool) -> int:
    """Check the options, then run basicsr's pipeline with patched loaders; one-line errors on stderr."""
    args = build_parser(prog, is_train).parse_args(argv)
    import ramit_plugin  # noqa: F401  (registers archs, models, datasets and losses in basicsr's registries)
    from ..checkpoint import CheckpointMismatchError
    from ..data.errors import DatasetError
    from ..models import NonFiniteLossError

    try:
        opt = load_options(args.opt)
        apply_force_yml(opt, args.force_yml or [], args.opt)
        check_options(opt, args.opt, is_train, args.launcher)
    except OptionError as err:
        print(f'{prog}: {err}', file=sys.stderr)
        return 2

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
    except (OptionError, CheckpointMismatchError, DatasetError) as err:  # the plugin's datasets check when built
        print(f'{prog}: {err}', file=sys.stderr)
        return 2
    except NonFiniteLossError as err:
        print(f'{prog}: {err}', file=sys.stderr)
        return 1
    finally:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


# ------------------------------------------------------------------------------------------- safe YAML options
def safe_ordered_yaml():
    """Replacement for basicsr.utils.options.ordered_yaml: a safe Loader (no Python objects) and its Dumper."""
    loader = getattr(yaml, 'CSafeLoader', yaml.SafeLoader)
    dumper = getattr(yaml, 'CDumper', yaml.Dumper)
    return loader, dumper


def load_options(path: str) -> dict:
    """Parse an option YAML safely; OptionError naming the file (and line) for unreadable, unsafe or bad YAML."""
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except OSError as err:
        raise OptionError(f'{path}: cannot read the option file ({err.strerror})') from None
    try:
        opt = yaml.load(text, Loader=safe_ordered_yaml()[0])
    except yaml.constructor.ConstructorError as err:
        line = err.problem_mark.line + 1 if err.problem_mark else '?'
        tag = re.search(r"tag '([^']+)'", str(err.problem))
        tag = tag.group(1) if tag else 'an unknown tag'
        raise OptionError(f'{path}, line {line}: refusing YAML tag {tag}: option files are read with a safe '
                          'loader and may not construct Python objects') from None
    except yaml.YAMLError as err:
        mark = getattr(err, 'problem_mark', None)
        where = f', line {mark.line + 1}, column {mark.column + 1}' if mark else ''
        problem = getattr(err, 'problem', None) or str(err).splitlines()[0]
        raise OptionError(f'{path}{where}: YAML syntax error: {problem}') from None
    if not isinstance(opt, dict):
        raise OptionError(f'{path}: not an option file (the top level must be a mapping of option keys)')
    return opt


def apply_force_yml(opt: dict, entries: List[str], path: str) -> None:
    """Apply --force_yml entries as basicsr does (same value parsing), with errors naming the entry."""
    from basicsr.utils.options import _postprocess_yml_value
    for entry in entries:
        if entry.count('=') != 1:
            raise OptionError(f'--force_yml {entry!r}: expected KEY:SUB=VALUE (one "=")')
        keys, value = (part.strip() for part in entry.split('='))
        keys = keys.split(':')
        node = opt
        for depth, key in enumerate(keys[:-1]):
            if not isinstance(node, dict) or key not in node:
                raise OptionError(f"--force_yml {entry!r}: {':'.join(keys[:depth + 1])} is not in {path}")
            node = node[key]
        if not isinstance(node, dict):
            raise OptionError(f"--force_yml {entry!r}: {':'.join(keys[:-1])} in {path} is not a mapping")
        try:
            node[keys[-1]] = _postprocess_yml_value(value)
        except Exception as err:  # basicsr evaluates list values with eval()
            raise OptionError(f'--force_yml {entry!r}: cannot parse the value ({err})') from None


# -------------------------------------------------------------------------------------------- option checking
def check_options(opt: dict, path: str, is_train: bool, launcher: str = 'none') -> None:
    """Everything BasicSR would otherwise trip over mid-run: registries, network, data folders, checkpoints."""
    import torch
    from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY

    def fail(key: str, msg: str) -> None:
        raise OptionError(f'{path}: {key}: {msg}')

    def section(key: str) -> dict:
        value = opt.get(key)
        if not isinstance(value, dict):
            fail(key, 'missing (a mapping is required)')
        return value

    for key in ('name', 'model_type', 'num_gpu'):
        if opt.get(key) in (None, ''):
            fail(key, 'missing')
    if opt['model_type'] not in MODEL_REGISTRY:
        fail('model_type', f"unknown model {opt['model_type']!r}; valid: "
                           f"{', '.join(sorted(MODEL_REGISTRY.keys()))}")
    cuda = torch.cuda.is_available()
    if opt['num_gpu'] not in ('auto', 0) and not cuda:
        fail('num_gpu', f"{opt['num_gpu']} but this machine has no CUDA GPU; use num_gpu: auto (or 0)")
    if launcher == 'slurm' and not cuda:
        raise OptionError('--launcher slurm needs CUDA GPUs; on CPUs start the processes with torchrun and '
                          '--launcher pytorch')

    net_opt = section('network_g')
    net_type = net_opt.get('type')
    if net_type not in ARCH_REGISTRY:
        fail('network_g:type', f"unknown network {net_type!r}; valid: {', '.join(sorted(ARCH_REGISTRY.keys()))}")
    try:
        net = ARCH_REGISTRY.get(net_type)(**{k: v for k, v in net_opt.items() if k != 'type'})
    except (ValueError, TypeError) as err:
        fail('network_g', str(err))

    paths = section('path')
    train_opt = section('train') if is_train else {}
    if is_train:
        check_train_options(opt, train_opt, fail, LOSS_REGISTRY)
    elif not isinstance(opt.get('val'), dict) or 'save_img' not in opt['val']:
        fail('val', 'a test file needs val: {save_img: false, metrics: ...}')
    check_datasets(opt, section('datasets'), is_train, fail, DATASET_REGISTRY)
    check_checkpoints(opt, paths, train_opt, net, fail)


def check_train_options(opt: dict, train_opt: dict, fail, loss_registry) -> None:
    """Keys train_pipeline reads without defaults, optimizer, scheduler, losses, AMP, warm start, progressive."""
    from ..models.progressive import ProgressiveSchedule
    from ..models.ramit_model import AMP_DTYPES, OPTIMIZERS

    logger_opt = opt.get('logger')
    for key in ('print_freq', 'save_checkpoint_freq'):
        if not isinstance(logger_opt, dict) or not isinstance(logger_opt.get(key), (int, float)):
            fail(f'logger:{key}', 'missing (a number of iterations is required)')
    if opt.get('val') is not None and not isinstance(opt['val'].get('val_freq'), (int, float)):
        fail('val:val_freq', 'missing (a number of iterations is required when val is given)')
    if not isinstance(train_opt.get('total_iter'), (int, float)):
        fail('train:total_iter', 'missing (a number of iterations is required)')
    optim = train_opt.get('optim_g') or {}
    if optim.get('type') not in OPTIMIZERS:
        fail('train:optim_g:type', f"{optim.get('type')!r} is not supported; valid: {', '.join(OPTIMIZERS)}")
    scheduler = (train_opt.get('scheduler') or {}).get('type')
    if scheduler not in SCHEDULERS:
        fail('train:scheduler:type', f"{scheduler!r} is not supported; valid: {', '.join(SCHEDULERS)}")
    losses = {k: v for k, v in train_opt.items() if k.endswith('_opt') and v}
    if not losses:
        fail('train', 'no loss configured; add e.g. pixel_opt: {type: L1Loss, loss_weight: 1.0}')
    for key, spec in losses.items():
        if not isinstance(spec, dict) or spec.get('type') not in loss_registry:
            kind = spec.get('type') if isinstance(spec, dict) else spec
            fail(f'train:{key}:type', f"unknown loss {kind!r}; valid: {', '.join(sorted(loss_registry.keys()))}")
    if train_opt.get('amp') not in (None, False, 'none', 'fp32', *AMP_DTYPES):
        fail('train:amp', f"{train_opt['amp']!r} is not supported; valid: {', '.join(AMP_DTYPES)}")
    if train_opt.get('warm_start_iter') and not opt['path'].get('pretrain_network_g'):
        fail('train:warm_start_iter', 'needs path:pretrain_network_g (the x2 model whose weights, except '
                                      'to_target.*, start the run)')
    if train_opt.get('progressive'):
        data_opt = (opt.get('datasets') or {}).get('train') or {}
        try:
            ProgressiveSchedule.from_options(train_opt['progressive'], data_opt.get('gt_size') or 0,
                                             data_opt.get('batch_size_per_gpu') or 0, opt.get('scale', 1))
        except ValueError as err:
            fail('train:progressive', str(err).replace('train:progressive: ', '', 1))


def check_datasets(opt: dict, datasets: dict, is_train: bool, fail, registry) -> None:
    """Dataset types, data roots (missing, empty, LMDB without meta_info) and LQ/GT sizes of paired sets."""
    from ..data.errors import DatasetError

    phases = ('train', 'val') if is_train else ('test', 'val')
    if is_train and 'train' not in datasets:
        fail('datasets:train', 'missing')
    for phase_key, data_opt in datasets.items():
        where = f'datasets:{phase_key}'
        if phase_key.split('_')[0] not in phases:
            fail(where, f"unknown phase; keys must start with {' or '.join(phases)}")
        if not isinstance(data_opt, dict) or data_opt.get('type') not in registry:
            kind = data_opt.get('type') if isinstance(data_opt, dict) else data_opt
            fail(f'{where}:type', f"unknown dataset {kind!r}; valid: {', '.join(sorted(registry.keys()))}")
        backend = (data_opt.get('io_backend') or {}).get('type', 'disk')
        roots = {k: v for k, v in data_opt.items() if k.startswith('dataroot')}
        if not roots:
            fail(where, 'no dataroot_gt / dataroot_lq given')
        for key, root in roots.items():
            check_root(f'{where}:{key}', root, backend, fail)
        if data_opt['type'] == 'PairedImageDataset' and {'dataroot_gt', 'dataroot_lq'} <= set(roots):
            check_pairs(where, data_opt, backend, int(opt.get('scale', 1)), phase_key.startswith('train'), fail)
        # Build it as basicsr will (phase and scale added as parse_options does; not via build_dataset, whose
        # logging would initialise basicsr's logger before train_pipeline can give it its log file).
        built = dict(copy.deepcopy(data_opt), phase=phase_key.split('_')[0])
        if 'scale' in opt:
            built['scale'] = opt['scale']
        try:
            registry.get(data_opt['type'])(built)
        except DatasetError as err:
            fail(where, str(err))


def check_root(where: str, root, backend: str, fail) -> None:
    """A data root exists and holds data: an LMDB with meta_info.txt, or a folder with images."""
    if root in (None, ''):
        fail(where, 'missing (a folder or LMDB path is required)')
    root = osp.expanduser(str(root))
    if not osp.isdir(root):
        fail(where, f'{root} does not exist (paths are relative to the current directory {os.getcwd()})')
    if backend == 'lmdb':
        for name in ('data.mdb', 'meta_info.txt'):
            if not osp.isfile(osp.join(root, name)):
                fail(where, f'{root} is not a complete LMDB: {name} is missing (create it with `ramit make-lmdb`)')
    elif not any(f.lower().endswith(IMAGE_EXTENSIONS) for _, _, files in os.walk(root) for f in files):
        fail(where, f'{root} contains no images ({", ".join(IMAGE_EXTENSIONS)})')


def check_pairs(where: str, data_opt: dict, backend: str, scale: int, train: bool, fail) -> None:
    """LQ/GT pairs fit the scale (train: GT = LQ*s exactly; val: GT cropped to LQ*s by basicsr, excess < s)."""
    gt_root, lq_root = (osp.expanduser(str(data_opt[k])) for k in ('dataroot_gt', 'dataroot_lq'))
    if backend == 'lmdb':
        gt_sizes, lq_sizes = lmdb_sizes(gt_root, f'{where}:dataroot_gt', fail), lmdb_sizes(
            lq_root, f'{where}:dataroot_lq', fail)
        unmatched = sorted(set(gt_sizes) ^ set(lq_sizes))
        if unmatched:
            fail(where, f'the GT and LQ LMDBs hold different keys, e.g. {", ".join(unmatched[:3])}')
        pairs = [(k, k, gt_sizes[k], lq_sizes[k]) for k in sorted(gt_sizes)]
    elif backend == 'disk' and not data_opt.get('meta_info_file'):
        from basicsr.data.data_util import paired_paths_from_folder
        try:
            paths = paired_paths_from_folder([lq_root, gt_root], ['lq', 'gt'], data_opt.get('filename_tmpl', '{}'))
        except AssertionError as err:
            fail(where, f'{err} (GT {gt_root}, LQ {lq_root}, filename_tmpl {data_opt.get("filename_tmpl", "{}")!r})')
        pairs = sorted((p['gt_path'], p['lq_path'], None, None) for p in paths)
    else:
        return
    gt_size = data_opt.get('gt_size') if train else None
    decoded = 0
    for gt_name, lq_name, gt_hw, lq_hw in pairs:
        if gt_hw is None:
            if not (gt_name.lower().endswith('.png') and lq_name.lower().endswith('.png')):
                if decoded >= SIZE_CHECKS_NON_PNG:
                    continue
                decoded += 1
            gt_hw, lq_hw = image_size(gt_name), image_size(lq_name)
        (gh, gw), (lh, lw) = gt_hw, lq_hw
        fits = (gh, gw) == (lh * scale, lw * scale) if train else (
            0 <= gh - lh * scale < scale and 0 <= gw - lw * scale < scale)
        if not fits:
            fail(where, f'GT {gt_name} is {gw}x{gh} but LQ {lq_name} is {lw}x{lh}: not x{scale} '
                        '(LQ folder of another scale, or mismatched pairs?)')
        if gt_size and min(lh, lw) < gt_size // scale:
            fail(f'{where}:gt_size', f'{gt_size} needs LQ images of at least {gt_size // scale} pixels; '
                                     f'{lq_name} is {lw}x{lh}')


def lmdb_sizes(root: str, where: str, fail) -> Dict[str, Tuple[int, int]]:
    """Key -> (height, width) from an LMDB's meta_info.txt ("name.png (h,w,c) level" per line)."""
    sizes = {}
    with open(osp.join(root, 'meta_info.txt'), encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            match = re.match(r'\s*(\S+)\s+\((\d+),\s*(\d+)', line)
            if not match:
                fail(where, f'{root}/meta_info.txt line {number} is not "name (h,w,c) compression"')
            # basicsr's paired_paths_from_lmdb keys an image by its name up to the first '.'.
            sizes[match.group(1).split('.')[0]] = (int(match.group(2)), int(match.group(3)))
    return sizes


def image_size(path: str) -> Tuple[int, int]:
    """(height, width) of an image: from the PNG header when possible, else by decoding."""
    with open(path, 'rb') as f:
        head = f.read(24)
    if head[:8] == b'\x89PNG\r\n\x1a\n' and head[12:16] == b'IHDR':
        width, height = struct.unpack('>II', head[16:24])
        return height, width
    import cv2
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise OptionError(f'{path}: not a readable image')
    return img.shape[:2]


def check_checkpoints(opt: dict, paths: dict, train_opt: dict, net, fail) -> None:
    """The pretrained network fits network_g (warm start: except to_target.*); resume_state exists."""
    from ..models.ramit_model import WARM_START_TRAINED, load_pretrained

    resume = paths.get('resume_state')
    if resume and not osp.isfile(osp.expanduser(str(resume))):
        fail('path:resume_state', f'{resume} does not exist')
    pretrain = paths.get('pretrain_network_g')
    if not pretrain:
        return
    exclude = (WARM_START_TRAINED,) if train_opt.get('warm_start_iter') else ()
    try:
        load_pretrained(net, osp.expanduser(str(pretrain)), paths.get('param_key_g', 'params'),
                        paths.get('strict_load_g', True), exclude)
    except ValueError as err:
        fail('path:pretrain_network_g', str(err))


# ------------------------------------------------------------------------------------- basicsr trap replacements
def init_dist(launcher: str, backend: str = 'nccl', **kwargs) -> None:
    """basicsr's init_dist on CUDA machines (NCCL); gloo without CUDA, where basicsr calls torch.cuda.set_device."""
    import torch
    import torch.distributed as dist
    from basicsr.utils import dist_util
    if torch.cuda.is_available():
        dist_util.init_dist(launcher, backend, **kwargs)
    else:
        dist.init_process_group(backend='gloo', **kwargs)


def latest_state(opt: dict) -> Optional[str]:
    """Newest training state of the experiment whose network checkpoint exists too (what --auto_resume uses)."""
    state_dir = osp.join('experiments', opt['name'], 'training_states')
    model_dir = osp.join('experiments', opt['name'], 'models')
    if not osp.isdir(state_dir):
        return None
    iters = sorted((int(m.group(1)) for m in map(re.compile(r'(\d+)\.state$').match, os.listdir(state_dir)) if m),
                   reverse=True)
    return next((osp.join(state_dir, f'{i}.state') for i in iters
                 if osp.isfile(osp.join(model_dir, f'net_g_{i}.pth'))), None)


def load_resume_state(opt: dict) -> Optional[dict]:
    """basicsr.train.load_resume_state, but loaded on the CPU with weights_only (optimizers move it to the device)."""
    import torch
    from basicsr.utils import check_resume
    if opt['auto_resume']:
        path = latest_state(opt)
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
