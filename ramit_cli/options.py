"""BasicSR option files, read safely and checked once against a declarative schema, before anything is imported,
built or written.

- ``load_options``: YAML with a safe loader (no Python objects; YAML 1.2 floats such as 1e-3; duplicate keys
  refused; aliases bounded), ``--force_yml`` applied as YAML values (never evaluated, unlike basicsr's ``exec``).
- The schema (msgspec structs below): every key RAMiT's option files, RAMiTModel and the plugin's and basicsr's
  datasets read, with its type, range and a one-line description. Unknown keys are refused with the closest known
  one. ``options_reference()`` prints the schema as the options reference (docs/options.md).
- ``check_data``: the data roots (existing folders with images, complete LMDBs holding every key their meta_info
  lists, LQ/GT sizes fitting the scale) and the checkpoint paths, from headers and meta_info files only.

Nothing here imports torch or basicsr: `basicsr train/test` check their option file before those load. What needs
basicsr (registry names) is checked by ``ramit_plugin.pipeline``; whether a checkpoint fits the network is checked
when RAMiTModel loads it, before any folder is created.
"""
import difflib
import os
import re
from os import path as osp
from typing import Annotated, Any, Dict, List, Literal, Optional, Sequence, Tuple, Union

import msgspec
import yaml
from msgspec import Meta


from ramit.datasets import check_lmdb, read_meta_info
from ramit.errors import OptionError, RamitError
from ramit.hparams import COMPILE_MODES, VARIANTS, TASKS
from ramit.images import IMAGE_EXTENSIONS, ImageFileError, is_image_name, read_header

# YAML 1.2 floats: PyYAML (YAML 1.1) reads 1e-3 and 5e+4 (no dot) as strings, which users mean as numbers.
YAML12_FLOAT = re.compile(r'^[-+]?(?:\d[\d_]*)?(?:\.\d*)?[eE][-+]?\d+$')
# An option file is a few hundred values; aliases that expand beyond this are an alias bomb, not options.
MAX_VALUES = 100_000
MAX_COUNT = 10 ** 12  # iterations and frequencies: 1e30 is a typo, not a schedule


class SafeOptionLoader(getattr(yaml, 'CSafeLoader', yaml.SafeLoader)):
    """PyYAML's safe loader (no Python objects), reading exponent floats without a dot (1e-3) as YAML 1.2 does and
    refusing a key given twice in one mapping (YAML's own rule; PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f'duplicate key {key!r} (first on line {seen[key]})', key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


SafeOptionLoader.add_implicit_resolver('tag:yaml.org,2002:float', YAML12_FLOAT, list('-+0123456789.'))
SafeOptionLoader.add_constructor('tag:yaml.org,2002:map', SafeOptionLoader.construct_yaml_map)

# ------------------------------------------------------------------------------------------------- the schema
Count = Annotated[int, Meta(ge=1, le=MAX_COUNT)]
Whole = Annotated[int, Meta(ge=0, le=MAX_COUNT)]
Positive = Annotated[float, Meta(gt=0)]
Rate = Annotated[float, Meta(ge=0, lt=1)]
Sigma = Annotated[float, Meta(ge=0, le=255)]
Doc = Meta  # Meta(description=...) documents an option


class Strict(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A section whose keys are all known: anything else is a typo."""


class Backend(Strict):
    """How a dataset reads its images."""
    type: Annotated[Literal['disk', 'lmdb'], Doc(description='where images are read from: a folder or an LMDB')] = \
        'disk'


class Dataset(Strict):
    """A dataset of basicsr's PairedImageDataset or SingleImageDataset, or of the plugin's PairedRestorationDataset
    or NoisyImageDataset."""
    name: Annotated[str, Doc(description='name in logs and metrics')]
    type: Annotated[str, Doc(description='dataset class in BasicSR\'s DATASET_REGISTRY')]
    dataroot_gt: Annotated[Optional[str], Doc(description='folder or LMDB of the ground truth (clean) images')] = None
    dataroot_lq: Annotated[Optional[str], Doc(description='folder or LMDB of the degraded inputs')] = None
    io_backend: Backend = msgspec.field(default_factory=Backend)
    meta_info_file: Annotated[Optional[str], Doc(description='only the images this file lists')] = None
    filename_tmpl: Annotated[str, Doc(description="LQ name from the GT name, e.g. '{}x2'")] = '{}'
    gt_size: Annotated[Optional[Count], Doc(description='training patch (GT pixels), a multiple of the scale')] = None
    use_hflip: Annotated[bool, Doc(description='random horizontal flips in training')] = False
    use_rot: Annotated[bool, Doc(description='random vertical flips and 90-degree rotations in training')] = False
    num_worker_per_gpu: Annotated[Optional[Whole], Doc(description='data-loader worker processes')] = None
    batch_size_per_gpu: Annotated[Optional[Count], Doc(description='samples per step and process')] = None
    dataset_enlarge_ratio: Annotated[Count, Doc(description='repeat the set this often per epoch')] = 1
    prefetch_mode: Annotated[Optional[Literal['cpu', 'cuda']], Doc(description="basicsr's prefetcher")] = None
    pin_memory: bool = False
    persistent_workers: bool = False
    num_prefetch_queue: Optional[Count] = None
    color: Annotated[Optional[Literal['y']], Doc(description="'y': Y channel only (basicsr's datasets)")] = None
    mean: Optional[List[float]] = None
    std: Optional[List[float]] = None
    gray: Annotated[bool, Doc(description='NoisyImageDataset: gray images (OpenCV RGB2GRAY)')] = False
    sigma: Annotated[Optional[Sigma], Doc(description='NoisyImageDataset: test noise level (pixel units)')] = None
    sigma_range: Annotated[Optional[Tuple[Sigma, Sigma]],
                           Doc(description='NoisyImageDataset: blind training noise [low, high]')] = None
    pairing: Annotated[Optional[Literal['same', 'rain100h', 've-lol']],
                       Doc(description='PairedRestorationDataset: naming rule of the pairs')] = None
    lq_tmpl: Annotated[Optional[str], Doc(description="PairedRestorationDataset: LQ names, e.g. 'rain-{}'")] = None
    gt_tmpl: Annotated[Optional[str], Doc(description="PairedRestorationDataset: GT names, e.g. 'norain-{}'")] = None


class Network(Strict):
    """RAMiT's arguments (``ramit.hparams``): a variant and task, and any hyper-parameter to override."""
    type: Literal['RAMiT']
    variant: Annotated[str, Doc(description=', '.join(VARIANTS))] = 'RAMiT'
    task: Annotated[str, Doc(description=', '.join(TASKS))] = 'sr'
    upscale: Annotated[Optional[int], Doc(description='2, 3 or 4 for sr; 1 otherwise')] = None
    dim: Optional[int] = None
    depths: Optional[List[int]] = None
    num_heads: Optional[List[int]] = None
    chsa_head_ratio: Optional[float] = None
    window_size: Optional[int] = None
    hidden_ratio: Optional[float] = None
    qkv_bias: Optional[bool] = None
    mv_ver: Optional[int] = None
    exp_factor: Optional[float] = None
    expand_groups: Optional[int] = None
    fuse_exp_factor: Optional[float] = None
    fuse_expand_groups: Optional[int] = None
    tail_mv: Optional[int] = None
    helper: Optional[bool] = None
    img_norm: Optional[bool] = None
    in_chans: Optional[int] = None
    attn_drop: Optional[Rate] = None
    proj_drop: Optional[Rate] = None
    drop_path: Optional[Rate] = None
    fast: Annotated[Optional[bool], Doc(description='forward path: fast, reference, or by device (null)')] = None


class Path_(Strict):
    """Checkpoints to start from."""
    pretrain_network_g: Annotated[Optional[str], Doc(description='weights to start from (any RAMiT checkpoint)')] \
        = None
    param_key_g: Annotated[str, Doc(description="entry of a BasicSR checkpoint: 'params' or 'params_ema'")] = \
        'params'
    strict_load_g: Annotated[bool, Doc(description='false: skip missing or mis-shaped keys, with a warning')] = True
    resume_state: Annotated[Optional[str], Doc(description='a training state to continue from')] = None


class Optimizer(Strict):
    """The optimizer and its arguments."""
    type: Annotated[Literal['Adam', 'AdamW'], Doc(description='optimizer')]
    lr: Annotated[Positive, Doc(description='learning rate')]
    betas: Optional[Tuple[Rate, Rate]] = None
    eps: Optional[Positive] = None
    weight_decay: Annotated[float, Meta(ge=0)] = 0.0
    amsgrad: bool = False


class Scheduler(Strict):
    """The learning-rate schedule (basicsr's) and its arguments."""
    type: Annotated[Literal['MultiStepLR', 'MultiStepRestartLR', 'CosineAnnealingRestartLR'],
                    Doc(description="basicsr's schedulers")]
    milestones: Annotated[Optional[List[Whole]], Doc(description='MultiStep*: iterations where lr *= gamma')] = None
    gamma: Optional[Positive] = None
    restarts: Optional[List[Whole]] = None
    restart_weights: Optional[List[float]] = None
    periods: Annotated[Optional[List[Count]], Doc(description='CosineAnnealingRestartLR: period lengths')] = None
    eta_min: Optional[Annotated[float, Meta(ge=0)]] = None


class Progressive(Strict):
    """Progressive patches: the loader delivers the largest patch and batch, each step is cropped to its stage."""
    iters: Annotated[List[Whole], Doc(description='first iteration of each stage, starting at 0')]
    gt_sizes: Annotated[List[Count], Doc(description='GT patch of each stage')]
    batch_sizes: Annotated[List[Count], Doc(description='batch of each stage, per process')]


class CompileMode(Strict):
    """``compile: {mode: ...}``."""
    mode: Literal[COMPILE_MODES] = 'auto'


class Train(Strict):
    """Training; every key ending in ``_opt`` (``pixel_opt``, ``fft_opt``, ...) is a loss (type and arguments)."""
    optim_g: Optimizer
    scheduler: Scheduler
    total_iter: Annotated[Count, Doc(description='iterations to train')]
    warmup_iter: Annotated[int, Meta(ge=-1, le=MAX_COUNT), Doc(description='linear lr warm-up; -1: none')] = -1
    ema_decay: Annotated[Rate, Doc(description='EMA of the weights (0: none), used to validate and saved')] = 0.0
    grad_clip: Annotated[float, Meta(ge=0), Doc(description='clip the gradient norm (0: off)')] = 0.0
    amp: Annotated[Optional[Literal['fp16', 'bf16', 'none', 'fp32']], Doc(description='autocast dtype')] = None
    compile: Annotated[Union[bool, Literal[COMPILE_MODES], CompileMode],
                       Doc(description='torch.compile the training step')] = False
    progressive: Annotated[Optional[Progressive], Doc(description='progressive patches')] = None
    warm_start_iter: Annotated[Whole, Doc(description='x3/x4: train only to_target.* for this many iterations')] = 0


class Loss(msgspec.Struct, omit_defaults=True):
    """A loss: its type and the arguments of that class (checked when it is built)."""
    type: Annotated[str, Doc(description="loss class in BasicSR's LOSS_REGISTRY")]
    loss_weight: float = 1.0


class Metric(Strict):
    """A metric of basicsr's METRIC_REGISTRY and its arguments."""
    type: Literal['calculate_psnr', 'calculate_ssim', 'calculate_niqe']
    crop_border: Whole = 0
    test_y_channel: bool = False
    input_order: Literal['HWC', 'CHW'] = 'HWC'
    better: Optional[Literal['higher', 'lower']] = None


class Val(Strict):
    """Validation (training) and testing."""
    val_freq: Annotated[Optional[Count], Doc(description='validate every this many iterations')] = None
    save_img: Annotated[bool, Doc(description='write the restored images')] = False
    suffix: Annotated[Optional[str], Doc(description='suffix of saved test images')] = None
    pbar: bool = False
    metrics: Annotated[Optional[Dict[str, dict]], Doc(description='name -> {type: calculate_psnr, ...}')] = None


class Wandb(Strict):
    """Weights & Biases logging (basicsr's)."""
    project: Optional[str] = None
    resume_id: Optional[str] = None
    entity: Optional[str] = None


class Logger(Strict):
    """Logging and checkpoints."""
    print_freq: Annotated[Count, Doc(description='log every this many iterations')] = 100
    save_checkpoint_freq: Annotated[Count, Doc(description='save every this many iterations')] = 5000
    use_tb_logger: Annotated[bool, Doc(description='tensorboard logs in tb_logger/<name>')] = False
    wandb: Optional[Wandb] = None
    save_safetensors: Annotated[bool, Doc(description='also save each checkpoint as .safetensors')] = False
    print_network: Annotated[bool, Doc(description='log the whole module tree (default: one line)')] = False


class DistParams(Strict):
    """basicsr's distributed settings (the launcher decides the backend)."""
    backend: Optional[str] = None
    port: Optional[int] = None


class Options(Strict):
    """An option file of `basicsr train` / `basicsr test`."""
    name: Annotated[str, Meta(pattern=r'^[^/\x00]+$'), Doc(description='folder under experiments/ or results/')]
    model_type: Annotated[str, Doc(description="model in BasicSR's MODEL_REGISTRY (RAMiTModel)")]
    datasets: Annotated[Dict[str, dict], Doc(description='phase (train, val*, test*) -> dataset')]
    network_g: Annotated[dict, Doc(description='the network: type RAMiT and its arguments')]
    num_gpu: Annotated[Union[Literal['auto'], Whole], Doc(description="GPUs; 'auto': those visible")] = 'auto'
    scale: Annotated[Optional[Literal[1, 2, 3, 4]], Doc(description='data scale (= network_g.upscale)')] = None
    manual_seed: Annotated[Optional[Annotated[int, Meta(ge=0, lt=2 ** 32)]], Doc(description='seed')] = None
    find_unused_parameters: bool = False
    path: Path_ = msgspec.field(default_factory=Path_)
    train: Optional[dict] = None
    val: Optional[Val] = None
    logger: Logger = msgspec.field(default_factory=Logger)
    dist_params: Optional[DistParams] = None


# -------------------------------------------------------------------------------------------------- reading
def load_options(path: str) -> dict:
    """Parse an option YAML safely; OptionError naming the file (and line) for unreadable, unsafe or bad YAML."""
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except IsADirectoryError:
        raise OptionError(f'{path}: is a folder; give the option file (.yml)') from None
    except UnicodeDecodeError:
        raise OptionError(f'{path}: not a text file (an option file is YAML text)') from None
    except OSError as err:
        raise OptionError(f'{path}: cannot read the option file ({err.strerror})') from None
    if '\0' in text:
        raise OptionError(f'{path}: not a text file (an option file is YAML text)')
    try:
        opt = yaml.load(text, Loader=SafeOptionLoader)
    except yaml.constructor.ConstructorError as err:
        line = err.problem_mark.line + 1 if err.problem_mark else '?'
        if 'duplicate key' in str(err.problem):
            raise OptionError(f'{path}, line {line}: {err.problem}') from None
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
    if count_values(opt) > MAX_VALUES:
        raise OptionError(f'{path}: expands to more than {MAX_VALUES:,} values (YAML aliases repeating aliases); '
                          'not an option file')
    return opt


def count_values(obj: Any, limit: int = MAX_VALUES) -> int:
    """How many values ``obj`` holds with aliases expanded (a shared list counts every time it is used); counting
    stops past ``limit``."""
    count, stack = 0, [obj]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def apply_force_yml(opt: dict, entries: Sequence[str], path: str) -> None:
    """Apply --force_yml entries KEY:SUB=VALUE: values read as YAML with the safe loader (never evaluated, unlike
    basicsr's); the schema then refuses keys that are no option. Errors name the entry."""
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
        node[keys[-1]] = force_yml_value(value, entry)
        if count_values(opt) > MAX_VALUES:
            raise OptionError(f'--force_yml {entry!r}: the options expand to more than {MAX_VALUES:,} values')


def force_yml_value(text: str, entry: str):
    """A --force_yml value read as YAML with the option files' safe loader; basicsr's None and ~ mean null."""
    if text in ('None', '~'):
        return None
    try:
        return yaml.load(text, Loader=SafeOptionLoader)
    except yaml.YAMLError as err:
        problem = getattr(err, 'problem', None) or str(err).splitlines()[0]
        raise OptionError(f'--force_yml {entry!r}: cannot read the value as YAML ({problem})') from None


# ------------------------------------------------------------------------------------------------- checking
SCHEMA_PATH = re.compile(r' - at `\$([^`]*)`$')
# Dataset types whose every key the schema knows; others (a user's own) may carry keys of their own.
KNOWN_DATASETS = ('PairedImageDataset', 'SingleImageDataset', 'PairedRestorationDataset', 'NoisyImageDataset')


class LenientDataset(msgspec.Struct, omit_defaults=True):
    """A dataset of a type the schema does not know: its common keys are checked, the rest left to it."""
    name: str
    type: str
    dataroot_gt: Optional[str] = None
    dataroot_lq: Optional[str] = None
    io_backend: Backend = msgspec.field(default_factory=Backend)
    gt_size: Optional[Count] = None
    num_worker_per_gpu: Optional[Whole] = None
    batch_size_per_gpu: Optional[Count] = None
    dataset_enlarge_ratio: Count = 1


def check_schema(opt: dict, path: str, is_train: bool) -> None:
    """OptionError in one line (file, key, what is wrong, what was found) unless ``opt`` fits the schema."""
    validate(opt, Options, '', path)
    for phase, data in opt['datasets'].items():
        struct = Dataset if isinstance(data, dict) and data.get('type') in KNOWN_DATASETS else LenientDataset
        validate(data, struct, f'datasets:{phase}', path)
    if opt['network_g'].get('type') == 'RAMiT':
        validate(opt['network_g'], Network, 'network_g', path)
    else:
        validate(opt['network_g'], Loss, 'network_g', path)
    for name, metric in ((opt.get('val') or {}).get('metrics') or {}).items():
        validate(metric, Metric, f'val:metrics:{name}', path)
    train = opt.get('train')
    if not is_train:
        if not isinstance(opt.get('val'), dict):
            raise OptionError(f'{path}: val: a test file needs val: {{save_img: false, metrics: ...}}')
        return
    if train is None:
        raise OptionError(f'{path}: train: missing (a training file needs optim_g, scheduler, total_iter and a loss)')
    losses = {k: v for k, v in train.items() if str(k).endswith('_opt') and v is not None}
    validate({k: v for k, v in train.items() if k not in losses and not str(k).endswith('_opt')}, Train, 'train',
             path)
    for key, spec in losses.items():
        validate(spec, Loss, f'train:{key}', path)
    if not losses:
        raise OptionError(f'{path}: train: no loss configured; add e.g. pixel_opt: {{type: L1Loss, loss_weight: 1.0}}')
    if 'train' not in opt['datasets']:
        raise OptionError(f'{path}: datasets:train: missing')


def validate(value: Any, struct: type, where: str, path: str) -> Any:
    """``value`` converted to ``struct``; OptionError naming the key, the problem and the value found."""
    try:
        return msgspec.convert(value, struct, strict=False)
    except msgspec.ValidationError as err:
        key, problem = explain(str(err), value, struct)
        raise OptionError(f"{path}: {':'.join(k for k in (where, key) if k) or 'top level'}: {problem}") from None


def explain(message: str, value: Any, struct: type) -> Tuple[str, str]:
    """('total_iter', 'expected int >= 1, got 0') from a msgspec message about ``value``; an unknown key gets the
    closest known one."""
    match = SCHEMA_PATH.search(message)
    keys = re.findall(r'\.(\w+)|\[(\d+)\]', match.group(1)) if match else []
    keys = [name or int(index) for name, index in keys]
    text = message[:match.start()] if match else message
    found, section = value, struct
    for key in keys:
        found = found[key] if isinstance(found, (dict, list)) and (isinstance(found, dict) or key < len(found)) \
            else None
        section = _field_struct(section, key) if isinstance(key, str) else section
    where = ':'.join(str(k) for k in keys)
    unknown = re.match(r'Object contains unknown field `([^`]+)`', text)
    if unknown:
        known = list(getattr(section, '__struct_fields__', ()))
        close = difflib.get_close_matches(unknown.group(1), known, 1)
        hint = f' (did you mean {close[0]}?)' if close else f"; valid: {', '.join(known)}" if known else ''
        return ':'.join(k for k in (where, unknown.group(1)) if k), f'not an option{hint}'
    missing = re.match(r'Object missing required field `([^`]+)`', text)
    if missing:
        return ':'.join(k for k in (where, missing.group(1)) if k), 'missing (required)'
    if text.startswith('Invalid enum value'):
        return where, f'{found!r} is not valid; {_choices(struct, keys)}'
    if 'matching regex' in text:
        return where, f'{found!r} must be a folder name (no /): the folder under experiments/ or results/'
    expected = re.sub(r', got \w+$', '', text.replace('`', '').replace('Expected', 'expected'))
    return where, f'{expected}; found {found!r}'


def _unwrap(typ: Any) -> Any:
    """The type inside msgspec's Metadata (Annotated) wrappers."""
    while isinstance(typ, msgspec.inspect.Metadata):
        typ = typ.type
    return typ


def _field_struct(struct: Any, name: str) -> Any:
    """The struct type of field ``name`` of ``struct`` (Optional unwrapped), or None."""
    if not (isinstance(struct, type) and issubclass(struct, msgspec.Struct)):
        return None
    for field in msgspec.inspect.type_info(struct).fields:
        if field.name == name:
            typ = _unwrap(field.type)
            types = typ.types if isinstance(typ, msgspec.inspect.UnionType) else (typ,)
            return next((_unwrap(t).cls for t in types if isinstance(_unwrap(t), msgspec.inspect.StructType)), None)
    return None


def _choices(struct: Any, keys: Sequence) -> str:
    """'valid: a, b, c' for the literal field at ``keys``."""
    for key in keys[:-1]:
        struct = _field_struct(struct, key) if isinstance(key, str) else struct
    for field in msgspec.inspect.type_info(struct).fields if struct else ():
        if keys and field.name == keys[-1]:
            typ = _unwrap(field.type)
            literals = [_unwrap(t) for t in getattr(typ, 'types', (typ,))
                        if isinstance(_unwrap(t), msgspec.inspect.LiteralType)]
            if literals:
                return 'valid: ' + ', '.join(map(str, literals[0].values))
    return 'see docs/options.md'


# ----------------------------------------------------------------------------------------- data and checkpoints
# The data roots each dataset type reads without a default.
REQUIRED_ROOTS = {'PairedImageDataset': ('dataroot_gt', 'dataroot_lq'),
                  'PairedRestorationDataset': ('dataroot_gt', 'dataroot_lq'), 'NoisyImageDataset': ('dataroot_gt',),
                  'SingleImageDataset': ('dataroot_lq',)}


def read_option_file(path: str, force_yml: Sequence[str], is_train: bool) -> dict:
    """The options of ``path`` with ``--force_yml`` applied, checked against the schema and the data on disk."""
    opt = load_options(path)
    apply_force_yml(opt, force_yml, path)
    check_schema(opt, path, is_train)
    check_network(opt, path)
    check_data(opt, path, is_train)
    check_checkpoints(opt, path, is_train)
    return opt


def check_network(opt: dict, path: str) -> None:
    """RAMiT's arguments form a network (``resolve_hparams``, no torch) of the data's scale."""
    net = opt['network_g']
    if net.get('type') != 'RAMiT':
        return
    from ramit.hparams import resolve_hparams

    try:
        hparams = resolve_hparams(**{k: v for k, v in net.items() if k not in ('type', 'fast')})
    except ValueError as err:
        raise OptionError(f'{path}: network_g: {err}') from None
    if opt.get('scale') is not None and opt['scale'] != hparams['upscale']:
        raise OptionError(f"{path}: scale: {opt['scale']} but network_g:upscale is {hparams['upscale']}: the data "
                          'and the network must have the same scale')


def check_data(opt: dict, path: str, is_train: bool) -> None:
    """Phases, data roots (missing, empty, LMDBs incomplete or missing keys) and the LQ/GT sizes of paired sets."""
    phases = ('train', 'val') if is_train else ('test', 'val')
    scale = int(opt.get('scale') or 1)
    for phase, data in opt['datasets'].items():
        where = f'{path}: datasets:{phase}'
        if phase.split('_')[0] not in phases:
            raise OptionError(f"{where}: unknown phase; keys must start with {' or '.join(phases)}")
        backend = (data.get('io_backend') or {}).get('type', 'disk')
        roots = {k: v for k, v in data.items() if k.startswith('dataroot') and v is not None}
        for key in REQUIRED_ROOTS.get(data['type'], ()):
            if key not in roots:
                raise OptionError(f"{where}:{key}: missing ({data['type']} reads "
                                  f"{' and '.join(REQUIRED_ROOTS[data['type']])})")
        if not roots:
            raise OptionError(f'{where}: no dataroot_gt / dataroot_lq given')
        if phase.startswith('train'):
            for key in ('batch_size_per_gpu', 'num_worker_per_gpu'):
                if data.get(key) is None:
                    raise OptionError(f'{where}:{key}: missing (a training set needs it)')
            gt_size = data.get('gt_size')
            if gt_size and gt_size % scale:
                raise OptionError(f'{where}:gt_size: {gt_size} is not a multiple of the scale {scale} (the LQ patch is '
                                  f'gt_size / scale pixels), e.g. {gt_size - gt_size % scale}')
        for key, root in roots.items():
            check_root(f'{where}:{key}', root, backend)
        meta_info_file = data.get('meta_info_file')
        if meta_info_file and not osp.isfile(osp.expanduser(str(meta_info_file))):
            raise OptionError(f'{where}:meta_info_file: {meta_info_file} does not exist')
        if data['type'] == 'PairedImageDataset' and {'dataroot_gt', 'dataroot_lq'} <= set(roots):
            check_pairs(where, data, backend, scale, phase.startswith('train'))


def check_root(where: str, root: str, backend: str) -> None:
    """A data root exists and holds data: a complete LMDB holding what its meta_info.txt lists, or images."""
    root = osp.expanduser(str(root))
    if osp.exists(root) and not osp.isdir(root):
        raise OptionError(f'{where}: {root} is a file; a data root is a folder of images or an LMDB folder')
    if not osp.isdir(root):
        raise OptionError(f'{where}: {root} does not exist (paths are relative to the current directory '
                          f'{os.getcwd()})')
    if backend == 'lmdb':
        for name in ('data.mdb', 'meta_info.txt'):
            if not osp.isfile(osp.join(root, name)):
                raise OptionError(f'{where}: {root} is not a complete LMDB: {name} is missing (create it with '
                                  '`ramit make-lmdb`)')
        meta_info = osp.join(root, 'meta_info.txt')
        try:
            # Keys as basicsr's paired_paths_from_lmdb cuts them: the name up to its first '.'.
            check_lmdb(root, [entry.name.split('.')[0] for entry in read_meta_info(meta_info)], meta_info)
        except RamitError as err:
            raise OptionError(f'{where}: {err}') from None
    elif not any(is_image_name(f) for _, _, files in os.walk(root, followlinks=True) for f in files):
        raise OptionError(f'{where}: {root} contains no images ({", ".join(IMAGE_EXTENSIONS)})')


def check_pairs(where: str, data: dict, backend: str, scale: int, train: bool) -> None:
    """LQ/GT pairs fit the scale (train: GT = LQ*s exactly; val: GT cropped to LQ*s by basicsr, excess < s)."""
    gt_root, lq_root = (osp.expanduser(str(data[k])) for k in ('dataroot_gt', 'dataroot_lq'))
    if backend == 'lmdb':
        gt_sizes, lq_sizes = lmdb_sizes(gt_root, f'{where}:dataroot_gt'), lmdb_sizes(lq_root, f'{where}:dataroot_lq')
        unmatched = sorted(set(gt_sizes) ^ set(lq_sizes))
        if unmatched:
            raise OptionError(f'{where}: the GT and LQ LMDBs hold different keys, e.g. {", ".join(unmatched[:3])}')
        pairs = [(k, k, gt_sizes[k], lq_sizes[k]) for k in sorted(gt_sizes)]
    elif backend == 'disk' and not data.get('meta_info_file'):
        pairs = folder_pairs(where, gt_root, lq_root, data.get('filename_tmpl', '{}'))
    else:
        return
    gt_size = data.get('gt_size') if train else None
    for gt_name, lq_name, gt_hw, lq_hw in pairs:
        (gh, gw), (lh, lw) = gt_hw, lq_hw
        fits = (gh, gw) == (lh * scale, lw * scale) if train else (
            0 <= gh - lh * scale < scale and 0 <= gw - lw * scale < scale)
        if not fits:
            raise OptionError(f'{where}: GT {gt_name} is {gw}x{gh} but LQ {lq_name} is {lw}x{lh}: not x{scale} '
                              '(LQ folder of another scale, or mismatched pairs?)')
        if gt_size and min(lh, lw) < gt_size // scale:
            raise OptionError(f'{where}:gt_size: {gt_size} needs LQ images of at least {gt_size // scale} pixels; '
                              f'{lq_name} is {lw}x{lh}')


def folder_pairs(where: str, gt_root: str, lq_root: str, tmpl: str) -> List[Tuple[str, str, Tuple, Tuple]]:
    """(GT file, LQ file, GT size, LQ size) of each pair as basicsr's paired_paths_from_folder pairs them: every GT
    image <stem><ext> with the LQ image ``tmpl.format(stem)<ext>``."""
    pairs = []
    for name in sorted(os.listdir(gt_root)):
        if not is_image_name(name):
            continue
        stem, ext = osp.splitext(name)
        lq = osp.join(lq_root, tmpl.format(stem) + ext)
        if not osp.isfile(lq):
            raise OptionError(f'{where}: {osp.join(gt_root, name)} has no LQ image {lq} (filename_tmpl {tmpl!r})')
        gt = osp.join(gt_root, name)
        pairs.append((gt, lq, image_size(gt, where), image_size(lq, where)))
    return pairs


def lmdb_sizes(root: str, where: str) -> Dict[str, Tuple[int, int]]:
    """Key -> (height, width) from an LMDB's meta_info.txt ("name.png (h,w,c) level" per line)."""
    sizes = {}
    for entry in read_meta_info(osp.join(root, 'meta_info.txt')):
        if entry.size is None:
            raise OptionError(f'{where}: {root}/meta_info.txt line {entry.line} is not "name (h,w,c) compression"')
        # basicsr's paired_paths_from_lmdb keys an image by its name up to the first '.'.
        sizes[entry.name.split('.')[0]] = entry.size
    return sizes


def image_size(path: str, where: str) -> Tuple[int, int]:
    """(height, width) of an image from its header."""
    try:
        header = read_header(path)
    except ImageFileError as err:
        raise OptionError(f'{where}: {err}') from None
    return header.height, header.width


def check_checkpoints(opt: dict, path: str, is_train: bool) -> None:
    """The files named under ``path:`` exist; a warm start names the model it starts from."""
    paths = opt.get('path') or {}
    for key in ('pretrain_network_g', 'resume_state'):
        value = paths.get(key)
        if value and not osp.isfile(osp.expanduser(str(value))):
            problem = 'is a folder' if osp.isdir(osp.expanduser(str(value))) else 'does not exist'
            raise OptionError(f'{path}: path:{key}: {value} {problem}')
    train = opt.get('train') or {}
    if is_train and train.get('warm_start_iter') and not paths.get('pretrain_network_g'):
        raise OptionError(f'{path}: train:warm_start_iter: needs path:pretrain_network_g (the x2 model whose weights, '
                          'except to_target.*, start the run)')


def options_reference() -> str:
    """The schema as Markdown tables, one per section: key, type and default, description (docs/options.md)."""
    sections = [('top level', Options), ('datasets:<phase>', Dataset), ('datasets:<phase>:io_backend', Backend),
                ('network_g (type RAMiT)', Network), ('path', Path_), ('train', Train), ('train:optim_g', Optimizer),
                ('train:scheduler', Scheduler), ('train:progressive', Progressive), ('train:compile', CompileMode),
                ('train:<name>_opt (a loss)', Loss), ('val', Val), ('val:metrics:<name>', Metric),
                ('logger', Logger), ('logger:wandb', Wandb), ('dist_params', DistParams)]
    lines = ['# Option files of `basicsr train` / `basicsr test`', '',
             'Generated from the schema in `ramit_cli/options.py`, which checks every option file before a run starts '
             '(types, ranges, unknown keys with the closest known one). Keys not listed here are refused. Every key '
             'ending in `_opt` under `train` is a loss.', '']
    for title, struct in sections:
        lines += [f'### `{title}`', '', ' '.join((struct.__doc__ or '').split()), '',
                  '| key | type | default | meaning |', '|---|---|---|---|']
        for field in msgspec.inspect.type_info(struct).fields:
            typ = field.type
            description = ''
            while isinstance(typ, msgspec.inspect.Metadata):
                description = description or (typ.extra_json_schema or {}).get('description', '')
                typ = typ.type
            default = ('required' if field.required else 'its section' if field.default is msgspec.NODEFAULT
                       else repr(field.default))
            lines.append(f'| `{field.name}` | {_type_name(typ)} | {default} | {description} |')
        lines.append('')
    return '\n'.join(lines).replace('| \n', '|\n').rstrip('\n') + '\n'


def _type_name(typ: Any) -> str:
    """A short name of an msgspec type for the reference tables."""
    typ = _unwrap(typ)
    if isinstance(typ, msgspec.inspect.UnionType):
        return ' or '.join(_type_name(t) for t in typ.types)
    if isinstance(typ, msgspec.inspect.LiteralType):
        return ' / '.join(repr(v) for v in typ.values)
    if isinstance(typ, (msgspec.inspect.ListType, msgspec.inspect.TupleType, msgspec.inspect.VarTupleType)):
        return 'list'
    if isinstance(typ, msgspec.inspect.StructType):
        return 'mapping'
    return type(typ).__name__.replace('Type', '').lower()
