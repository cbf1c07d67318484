"""Checks of a BasicSR option file before `basicsr train/test` start: one-line OptionErrors, nothing written.

Everything basicsr 1.4.2 would otherwise trip over mid-run (or after minutes of data loading) is checked up front:
YAML syntax and unsafe tags, --force_yml entries (values read as YAML, never evaluated; only keys the file has or
the plugin documents), registry names, the network's options and its scale, numbers that must be positive, data
roots, LMDBs (complete data.mdb, every meta_info key present), LQ/GT sizes against the scale, training keys without
defaults, metric types, and the checkpoints named under ``path``.
"""
import copy
import difflib
import os
import re
from fnmatch import fnmatchcase
from os import path as osp
from typing import Dict, List, Sequence, Tuple

import torch
import yaml
from basicsr.data.data_util import paired_paths_from_folder
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY

from .basicsr_compat import safe_ordered_yaml
from .checkpoint import load_checkpoint
from .compilation import compile_options
from .errors import OptionError, RamitError
from .image_files import IMAGE_EXTENSIONS, check_lmdb, is_image_name, read_header, read_meta_info
from .models.progressive import ProgressiveSchedule
from .models.ramit_model import OPTIMIZERS, WARM_START_TRAINED
from .precision import amp_dtype

SCHEDULERS = ('MultiStepLR', 'MultiStepRestartLR', 'CosineAnnealingRestartLR')  # what basicsr 1.4.2 builds
# --force_yml may add a key the file leaves out only where it is an argument of what the section builds (checked
# when that is built) or one of the optional keys basicsr and the plugin read (segments match as fnmatch patterns).
ARGUMENT_SECTIONS = ('network_g', 'train:optim_g', 'train:scheduler', 'train:*_opt', 'val:metrics:*',
                     'datasets:*:io_backend')
OPTIONAL_KEYS = (
    'manual_seed', 'scale', 'find_unused_parameters', 'train:*_opt', 'train:ema_decay', 'train:warmup_iter',
    'train:grad_clip', 'train:amp', 'train:compile', 'train:progressive', 'train:warm_start_iter',
    'path:pretrain_network_g', 'path:param_key_g', 'path:strict_load_g', 'path:resume_state', 'logger:use_tb_logger',
    'logger:save_safetensors', 'val:suffix', 'val:pbar', *(f'datasets:*:{key}' for key in (
        'dataroot_gt', 'dataroot_lq', 'meta_info_file', 'filename_tmpl', 'io_backend', 'gt_size', 'use_hflip',
        'use_rot', 'num_worker_per_gpu', 'batch_size_per_gpu', 'dataset_enlarge_ratio', 'prefetch_mode', 'pin_memory',
        'persistent_workers', 'gray', 'sigma', 'sigma_range', 'pairing', 'lq_tmpl', 'gt_tmpl')))
# The data roots each dataset type reads without a default.
REQUIRED_ROOTS = {'PairedImageDataset': ('dataroot_gt', 'dataroot_lq'),
                  'PairedRestorationDataset': ('dataroot_gt', 'dataroot_lq'), 'NoisyImageDataset': ('dataroot_gt',),
                  'SingleImageDataset': ('dataroot_lq',)}


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
    """Apply --force_yml entries KEY:SUB=VALUE: values read as YAML with the safe loader (never evaluated, unlike
    basicsr's), keys only those the file has (or OPTIONAL_KEYS / ARGUMENT_SECTIONS), errors naming the entry."""
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
        if keys[-1] not in node and not may_add(keys):
            close = difflib.get_close_matches(keys[-1], [str(k) for k in node], 1)
            hint = f" (did you mean {':'.join(keys[:-1] + close)}?)" if close else ''
            raise OptionError(f"--force_yml {entry!r}: {':'.join(keys)} is not an option in {path}{hint}; "
                              '--force_yml changes options the file has (add new ones to the file)')
        node[keys[-1]] = force_yml_value(value, entry)


def may_add(keys: Sequence[str]) -> bool:
    """Whether --force_yml may add the key path ``keys`` to a file that lacks it."""
    def matches(parts: Sequence[str], pattern: str) -> bool:
        wanted = pattern.split(':')
        return len(parts) == len(wanted) and all(fnmatchcase(p, w) for p, w in zip(parts, wanted))

    return (any(matches(keys[:-1], section) for section in ARGUMENT_SECTIONS)
            or any(matches(keys, key) for key in OPTIONAL_KEYS))


def force_yml_value(text: str, entry: str):
    """A --force_yml value read as YAML with the option files' safe loader; basicsr's None and ~ mean null."""
    if text in ('None', '~'):
        return None
    try:
        return yaml.load(text, Loader=safe_ordered_yaml()[0])
    except yaml.YAMLError as err:
        problem = getattr(err, 'problem', None) or str(err).splitlines()[0]
        raise OptionError(f'--force_yml {entry!r}: cannot read the value as YAML ({problem})') from None


# -------------------------------------------------------------------------------------------- option checking
def check_options(opt: dict, path: str, is_train: bool, launcher: str = 'none') -> None:
    """Everything BasicSR would otherwise trip over mid-run: registries, network, data folders, checkpoints."""
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
    if not isinstance(opt['name'], str) or '/' in opt['name'] or opt['name'] in ('.', '..'):
        fail('name', f"{opt['name']!r} must be a folder name (the experiment's folder under experiments/)")
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
    upscale = getattr(net, 'upscale', None)
    if 'scale' in opt and upscale is not None and opt['scale'] != upscale:
        fail('scale', f"{opt['scale']!r} but network_g:upscale is {upscale}: the data and the network must have the "
                      'same scale')

    paths = section('path')
    train_opt = section('train') if is_train else {}
    if is_train:
        check_train_options(opt, train_opt, fail, LOSS_REGISTRY)
    elif not isinstance(opt.get('val'), dict) or 'save_img' not in opt['val']:
        fail('val', 'a test file needs val: {save_img: false, metrics: ...}')
    check_metrics(opt.get('val'), fail)
    check_datasets(opt, section('datasets'), is_train, fail, DATASET_REGISTRY)
    check_checkpoints(opt, paths, train_opt, net, fail)


def check_train_options(opt: dict, train_opt: dict, fail, loss_registry) -> None:
    """Keys train_pipeline reads without defaults, optimizer, scheduler, losses, AMP, compile, warm start,
    progressive."""
    logger_opt = opt.get('logger') if isinstance(opt.get('logger'), dict) else {}
    counts = [(f'logger:{key}', logger_opt, key, 1) for key in ('print_freq', 'save_checkpoint_freq')]
    if opt.get('val') is not None:
        counts.append(('val:val_freq', opt['val'], 'val_freq', 1))
    counts.append(('train:total_iter', train_opt, 'total_iter', 1))
    for where, section, key, least in counts:
        check_count(where, section.get(key), least, fail, required=True)
    check_count('train:warmup_iter', train_opt.get('warmup_iter'), -1, fail)
    if not isinstance(logger_opt.get('save_safetensors', False), bool):
        fail('logger:save_safetensors', f"{logger_opt['save_safetensors']!r} is not true or false")
    optim = train_opt.get('optim_g') or {}
    if optim.get('type') not in OPTIMIZERS:
        fail('train:optim_g:type', f"{optim.get('type')!r} is not supported; valid: {', '.join(OPTIMIZERS)}")
    lr = optim.get('lr')
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        fail('train:optim_g:lr', f'{lr!r} must be a positive number (e.g. 4e-4)')
    scheduler = train_opt.get('scheduler') or {}
    if scheduler.get('type') not in SCHEDULERS:
        fail('train:scheduler:type', f"{scheduler.get('type')!r} is not supported; valid: {', '.join(SCHEDULERS)}")
    for key in ('milestones', 'periods'):
        if key in scheduler and (not isinstance(scheduler[key], list) or any(
                isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 for v in scheduler[key])):
            fail(f'train:scheduler:{key}', f'{scheduler[key]!r} must be a list of iteration numbers')
    losses = {k: v for k, v in train_opt.items() if k.endswith('_opt') and v}
    if not losses:
        fail('train', 'no loss configured; add e.g. pixel_opt: {type: L1Loss, loss_weight: 1.0}')
    for key, spec in losses.items():
        if not isinstance(spec, dict) or spec.get('type') not in loss_registry:
            kind = spec.get('type') if isinstance(spec, dict) else spec
            fail(f'train:{key}:type', f"unknown loss {kind!r}; valid: {', '.join(sorted(loss_registry.keys()))}")
    for key, check in (('amp', amp_dtype), ('compile', compile_options)):
        try:
            check(train_opt.get(key), f'train:{key}')
        except ValueError as err:
            fail(f'train:{key}', str(err).replace(f'train:{key}: ', '', 1))
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


def check_count(where: str, value, least: int, fail, required: bool = False) -> None:
    """A whole number (an integral float such as 5e5 too) of at least ``least``; missing only if not ``required``."""
    if value is None and not required:
        return
    if value is None:
        fail(where, f'missing (a whole number of at least {least} is required)')
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer()
            or value < least):
        fail(where, f'{value!r} must be a whole number of at least {least}')


def check_metrics(val_opt, fail) -> None:
    """Every val:metrics entry names a metric of basicsr's METRIC_REGISTRY."""
    metrics = (val_opt or {}).get('metrics') if isinstance(val_opt, dict) else None
    for name, spec in (metrics or {}).items():
        kind = spec.get('type') if isinstance(spec, dict) else spec
        if kind not in METRIC_REGISTRY:
            valid = ', '.join(sorted(METRIC_REGISTRY.keys()))
            fail(f'val:metrics:{name}:type', f'unknown metric {kind!r}; valid: {valid}')


def check_loader_numbers(where: str, data_opt: dict, scale: int, fail) -> None:
    """A training set's batch size, workers, patch size (a multiple of the scale) and enlarge ratio."""
    for key, least in (('batch_size_per_gpu', 1), ('num_worker_per_gpu', 0)):
        value = data_opt.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            fail(f'{where}:{key}', f'{value!r} must be a whole number of at least {least}')
    check_count(f'{where}:dataset_enlarge_ratio', data_opt.get('dataset_enlarge_ratio'), 1, fail)
    gt_size = data_opt.get('gt_size')
    if gt_size is not None:
        if isinstance(gt_size, bool) or not isinstance(gt_size, int) or gt_size < 1:
            fail(f'{where}:gt_size', f'{gt_size!r} must be a whole number of pixels of at least 1')
        if gt_size % scale:
            fail(f'{where}:gt_size', f'{gt_size} is not a multiple of the scale {scale} (the LQ patch is gt_size / '
                                     f'scale pixels), e.g. {gt_size - gt_size % scale}')


def check_datasets(opt: dict, datasets: dict, is_train: bool, fail, registry) -> None:
    """Dataset types, data roots (missing, empty, LMDB without meta_info) and LQ/GT sizes of paired sets."""
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
        required = REQUIRED_ROOTS.get(data_opt['type'], ())
        for key in required:
            if key not in roots:
                fail(f'{where}:{key}', f"missing ({data_opt['type']} reads {' and '.join(required)})")
        if phase_key.startswith('train'):
            check_loader_numbers(where, data_opt, int(opt.get('scale', 1)), fail)
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
        except RamitError as err:  # DatasetError, LmdbError
            fail(where, str(err))
        except OSError as err:  # basicsr's own datasets: e.g. a meta_info_file that is not there
            fail(where, f'{err.filename}: {err.strerror}' if err.filename else str(err))


def check_root(where: str, root, backend: str, fail) -> None:
    """A data root exists and holds data: an LMDB with meta_info.txt, or a folder with images."""
    if root in (None, ''):
        fail(where, 'missing (a folder or LMDB path is required)')
    root = osp.expanduser(str(root))
    if osp.exists(root) and not osp.isdir(root):
        fail(where, f'{root} is a file; a data root is a folder of images or an LMDB folder')
    if not osp.isdir(root):
        fail(where, f'{root} does not exist (paths are relative to the current directory {os.getcwd()})')
    if backend == 'lmdb':
        for name in ('data.mdb', 'meta_info.txt'):
            if not osp.isfile(osp.join(root, name)):
                fail(where, f'{root} is not a complete LMDB: {name} is missing (create it with `ramit make-lmdb`)')
        meta_info = osp.join(root, 'meta_info.txt')
        try:
            # Keys as basicsr's paired_paths_from_lmdb cuts them: the name up to its first '.'.
            check_lmdb(root, [entry.name.split('.')[0] for entry in read_meta_info(meta_info)], meta_info)
        except RamitError as err:
            fail(where, str(err))
    elif not any(is_image_name(f) for _, _, files in os.walk(root, followlinks=True) for f in files):
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
        try:
            paths = paired_paths_from_folder([lq_root, gt_root], ['lq', 'gt'], data_opt.get('filename_tmpl', '{}'))
        except AssertionError as err:
            fail(where, f'{err} (GT {gt_root}, LQ {lq_root}, filename_tmpl {data_opt.get("filename_tmpl", "{}")!r})')
        pairs = sorted((p['gt_path'], p['lq_path'], None, None) for p in paths)
    else:
        return
    gt_size = data_opt.get('gt_size') if train else None
    for gt_name, lq_name, gt_hw, lq_hw in pairs:
        if gt_hw is None:
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
    for entry in read_meta_info(osp.join(root, 'meta_info.txt')):
        if entry.size is None:
            fail(where, f'{root}/meta_info.txt line {entry.line} is not "name (h,w,c) compression"')
        # basicsr's paired_paths_from_lmdb keys an image by its name up to the first '.'.
        sizes[entry.name.split('.')[0]] = entry.size
    return sizes


def image_size(path: str) -> Tuple[int, int]:
    """(height, width) of an image from its header."""
    header = read_header(path)
    return header.height, header.width


def check_checkpoints(opt: dict, paths: dict, train_opt: dict, net, fail) -> None:
    """The pretrained network fits network_g (warm start: except to_target.*); resume_state exists."""
    resume = paths.get('resume_state')
    if resume and not osp.isfile(osp.expanduser(str(resume))):
        fail('path:resume_state', f'{resume} does not exist')
    pretrain = paths.get('pretrain_network_g')
    if not pretrain:
        return
    exclude = (WARM_START_TRAINED,) if train_opt.get('warm_start_iter') else ()
    try:
        load_checkpoint(net, osp.expanduser(str(pretrain)), exclude, paths.get('strict_load_g', True),
                        paths.get('param_key_g', 'params'), label=str(pretrain))
    except ValueError as err:
        fail('path:pretrain_network_g', str(err))
