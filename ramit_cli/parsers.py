"""The argument parsers of every `ramit` / `basicsr` command: the standard library and ``ramit.hparams`` only, so
`--help` and argument errors answer without importing torch, basicsr or mmengine. Each command's implementation
(``ramit_cli.<command>``) receives the parsed namespace."""
import argparse
import os
from pathlib import Path
from typing import Union

from ramit.hparams import COMPILE_MODES, TASKS, VARIANTS

LAUNCHERS = ('none', 'pytorch', 'slurm')
OPTION_FILES = ('the shipped option files are in the repository\'s options/ folder and, installed, in '
                'ramit_plugin/options (python -c "import ramit_plugin.resources as r; print(r.options_dir())")')

TRAIN_NOTES = f"""\
BasicSR's option keys apply (reference: docs/options.md; {OPTION_FILES}). Paths in the file are relative
to the current directory; experiments/ and tb_logger/ are written there.

distributed training (GPUs use NCCL, CPU-only machines gloo):
  torchrun --nproc_per_node=2 $(which basicsr) train -opt X.yml --launcher pytorch
resume the last saved state of an experiment:
  basicsr train -opt X.yml --auto_resume
override options without editing the file:
  basicsr train -opt X.yml --force_yml train:total_iter=1000 datasets:train:batch_size_per_gpu=8
"""
TEST_NOTES = f"""\
BasicSR's option keys apply (reference: docs/options.md; {OPTION_FILES}). Paths in the file are relative
to the current directory; results/<name>/ (log, metrics, images with val: save_img) is written there.

override options without editing the file:
  basicsr test -opt X.yml --force_yml path:pretrain_network_g=my_model.pth
"""
INFER_DESCRIPTION = """Restore images with a RAMiT checkpoint (a file or a published name such as RAMiT-1_X2).

Any RAMiT checkpoint works, custom sizes included: the network is rebuilt from the checkpoint's shapes.
Gray images into a colour network are replicated to RGB and the result converted back to gray (OpenCV
weights); colour images into a gray network are converted with OpenCV's RGB->gray weights and stay gray.
The alpha channel of RGBA images is resized by bicubic interpolation and re-attached. Outputs are PNG files
<name>_RAMiT_x<s>.png (SR) or <name>_RAMiT_<task>.png, with the bit depth of the input (8 or 16); inputs
whose names differ only in the extension (a.png, a.jpg) get <name>_<ext>_RAMiT_... so neither replaces
the other."""
MAKE_LMDB_HELP = ("Pack an image folder into an LMDB as BasicSR's create_lmdb.py does: PNG-encoded values, "
                  'key = file stem, meta_info.txt beside data.mdb. For a paired set run it once for the LQ folder '
                  'and once for the GT folder: the keys of EDSR-named LR files (babyx2.png) drop the common '
                  "x<scale> suffix, so they match the HR keys as BasicSR's PairedImageDataset requires.")
MAKE_LR_HELP = ("Downscale every HR image with MATLAB's bicubic imresize (bit-exact), after cropping it to a "
                'multiple of the scale as BasicSR does; LR files are named <name>x<scale>.png (EDSR/BasicSR '
                'naming). 8- and 16-bit images keep their bit depth and channels.')
EXTRACT_SUBIMAGES_HELP = ("Crop large training images into overlapping sub-images, as BasicSR's "
                          'scripts/data_preparation/extract_subimages.py does for DIV2K (faster loading in '
                          'training). Sub-images are named <name>_s001.png, ...; EDSR-named LR files (0001x2.png) '
                          'lose their x<scale> so LR and HR sub-images share names. DIV2K: HR --crop-size 480 '
                          '--step 240; LR X2 240/120, X3 160/80, X4 120/60.')


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'{value} is not a positive integer')
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer of at least 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'{value} is not an integer >= 0')
    return value


def add_threads(parser: argparse.ArgumentParser, default=None, help_text: str = '') -> None:
    """--threads N: torch and OpenCV threads of the command (ramit_cli.runtime.set_threads)."""
    parser.add_argument('--threads', type=positive_int, default=default, metavar='N',
                        help=help_text or 'torch and OpenCV threads (default: all cores, as torch decides); on a '
                                          'busy machine fewer threads than free cores is much faster')


# ------------------------------------------------------------------------------------------------------- basicsr
def basicsr_parser(prog: str, is_train: bool) -> argparse.ArgumentParser:
    """`basicsr train` / `basicsr test`: basicsr's parse_options, with help text and --threads."""
    verb = 'Train' if is_train else 'Test'
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=TRAIN_NOTES if is_train else TEST_NOTES,
        description=f"{verb} with BasicSR's {'train' if is_train else 'test'} pipeline from an option YAML, with "
                    'the RAMiT plugin registered (network_g type RAMiT, model_type RAMiTModel).')
    parser.add_argument('-opt', required=True, metavar='X.yml', help='option YAML file')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none',
                        help='none: one process; pytorch: started by torchrun; slurm: started by srun (GPUs)')
    if is_train:
        parser.add_argument('--auto_resume', action='store_true',
                            help='continue exactly where the newest complete checkpoint in experiments/<name> left '
                                 'off (same samples, augmentations and random draws)')
        parser.add_argument('--debug', action='store_true',
                            help='prefix the name with debug_: validate every 8 iterations, log every one, no '
                                 'tensorboard')
    parser.add_argument('--local_rank', '--local-rank', dest='local_rank', type=int, default=0,
                        help='set by torch.distributed.launch; torchrun passes it in the environment instead')
    parser.add_argument('--force_yml', nargs='+', default=None, metavar='KEY:SUB=VALUE',
                        help='override options the file has (values are YAML, never evaluated), e.g. '
                             'train:ema_decay=0.999 datasets:train:num_worker_per_gpu=0')
    add_threads(parser)
    return parser


def train_parser(prog: str) -> argparse.ArgumentParser:
    """`basicsr train`."""
    return basicsr_parser(prog, is_train=True)


def test_parser(prog: str) -> argparse.ArgumentParser:
    """`basicsr test`."""
    return basicsr_parser(prog, is_train=False)


def demo_parser(prog: str) -> argparse.ArgumentParser:
    """`ramit demo`."""
    parser = argparse.ArgumentParser(
        prog=prog, description='Build a small x2 super-resolution set from the photos that scikit-image ships '
        '(MATLAB-bicubic LR, sub-images, LMDB), train a small RAMiT with `basicsr train` and '
        'options/demo_RAMiT_SRx2.yml, and print its PSNR against bicubic upscaling on held-out photos.')
    parser.add_argument('--workdir', type=Path, default=Path('ramit_demo'),
                        help='folder for data/, the option file, experiments/ and tb_logger/ (default: ./ramit_demo)')
    parser.add_argument('--iters', type=int, default=None,
                        help="training iterations (default: the option file's total_iter)")
    add_threads(parser, default=max(1, min(4, (os.cpu_count() or 2) // 2)),
                help_text='torch threads for training; the other cores load data (default: half the cores, at '
                          'most 4: oversubscribed cores slow training down many times)')
    return parser


# ------------------------------------------------------------------------------------------------ data preparation
def data_prep_parser(prog: str, description: str, input_help: str, output_help: str,
                     compress_level=None) -> argparse.ArgumentParser:
    """Parser with the options every data preparation command shares."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument('--input', required=True, type=Path, help=input_help)
    parser.add_argument('--output', required=True, type=Path, help=output_help)
    parser.add_argument('--overwrite', action='store_true',
                        help='replace existing outputs (the old ones stay until the new ones are complete)')
    parser.add_argument('--n-thread', type=positive_int, default=4, help='worker processes (default: 4)')
    if compress_level is not None:
        parser.add_argument('--compress-level', type=int, default=compress_level, choices=range(10), metavar='0-9',
                            help=f'PNG compression level of the written images (default: {compress_level}, as '
                                 'BasicSR)')
    return parser


def make_lmdb_parser(prog: str) -> argparse.ArgumentParser:
    """`ramit make-lmdb`."""
    parser = data_prep_parser(prog, MAKE_LMDB_HELP, 'folder of images (not searched recursively)',
                              'LMDB folder to create, ending with .lmdb', compress_level=1)
    parser.add_argument('--keep-names', action='store_true',
                        help='use file stems as keys even when they all end with x2/x3/x4/x8')
    parser.add_argument('--recursive', action='store_true',
                        help="also pack images in sub-folders; their keys keep the folder ('LOL/1' for LOL/1.png), "
                             'so a folder of links to several sets becomes one LMDB')
    return parser


def make_lr_parser(prog: str) -> argparse.ArgumentParser:
    """`ramit make-lr`."""
    parser = data_prep_parser(prog, MAKE_LR_HELP, 'folder of HR images', 'folder to create for the LR images')
    parser.add_argument('--scale', required=True, type=int, help='downscaling factor, e.g. 2, 3 or 4')
    parser.add_argument('--hr-output', type=Path,
                        help='also write the HR images cropped to a multiple of the scale here, so that pairs '
                             'fit exactly (BasicSR refuses GT sizes that are not scale x LQ size in training)')
    return parser


def extract_subimages_parser(prog: str) -> argparse.ArgumentParser:
    """`ramit extract-subimages`."""
    parser = data_prep_parser(prog, EXTRACT_SUBIMAGES_HELP, 'folder of images', 'folder to create for the '
                              'sub-images', compress_level=3)
    parser.add_argument('--crop-size', type=int, default=480, help='side of the square crops (default: 480)')
    parser.add_argument('--step', type=int, default=240, help='stride between crops (default: 240)')
    parser.add_argument('--thresh-size', type=int, default=0,
                        help='add a last crop flush with the border when more than this many pixels would be '
                             'left over (default: 0)')
    return parser


# ------------------------------------------------------------------------------------------------ inference, tools
def tile_size(text: str) -> Union[str, int]:
    """argparse type of --tile: a positive integer or 'auto'."""
    return text if text == 'auto' else positive_int(text)


def add_precision(parser: argparse.ArgumentParser) -> None:
    """--half / --bf16: the network's weights and inputs in float16 or bfloat16 (float32 otherwise)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--half', action='store_true',
                       help='float16 (fast on CUDA; correct but slow on CPUs without float16 arithmetic)')
    group.add_argument('--bf16', action='store_true', help='bfloat16 (CUDA, and CPUs with bfloat16 support)')


def add_compile(parser: argparse.ArgumentParser, what: str) -> None:
    """--compile [MODE]: torch.compile (ramit.compilation; 'auto' records CUDA graphs on CUDA)."""
    parser.add_argument('--compile', nargs='?', const='auto', choices=COMPILE_MODES, metavar='MODE',
                        help=f"{what} with torch.compile; MODE one of {', '.join(COMPILE_MODES)} (default auto: "
                             'CUDA graphs on CUDA). The first call of each input size compiles (minutes on a CPU, '
                             'about a minute on a GPU); kernels are cached for the next run '
                             '($TORCHINDUCTOR_CACHE_DIR, else <cache>/inductor)')


def add_checkpoint_checks(parser: argparse.ArgumentParser) -> None:
    """--variant / --task / --scale, checked against (or, for the task, completing) what the checkpoint holds."""
    parser.add_argument('--variant', choices=tuple(VARIANTS), help='check the checkpoint is this variant')
    parser.add_argument('--task', choices=tuple(TASKS),
                        help='task; needed for 3-channel scale-1 checkpoints whose file does not say it')
    parser.add_argument('--scale', type=int, choices=(1, 2, 3, 4), help='check the checkpoint has this scale')


def infer_parser(prog: str) -> argparse.ArgumentParser:
    """`ramit infer`."""
    p = argparse.ArgumentParser(prog=prog, description=INFER_DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('-i', '--input', nargs='+', required=True, metavar='INPUT',
                   help='image files, folders (their image files, not recursive) or glob patterns')
    p.add_argument('-o', '--output', required=True, metavar='OUT_DIR', help='output folder (created if missing)')
    p.add_argument('--weights', required=True, metavar='W',
                   help='checkpoint file, or a published model name (see `ramit models`), downloaded once')
    add_checkpoint_checks(p)
    p.add_argument('--tile', type=tile_size, metavar='N|auto',
                   help='process in N x N input tiles (bounded memory); auto: the largest tile that fits the free '
                        'memory of the device (untiled when the whole image fits)')
    p.add_argument('--tile-overlap', type=non_negative_int, default=16, metavar='M',
                   help='tile overlap in input pixels (16)')
    p.add_argument('--max-memory', type=positive_int, metavar='MIB',
                   help='with --tile auto: plan for at most this much memory instead of what is free')
    p.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda'), help='device (auto)')
    p.add_argument('--backend', default='auto', choices=('auto', 'torch', 'onnxruntime'),
                   help='auto: onnxruntime for float32 on the CPU (faster there; the model is exported once and '
                        'cached), PyTorch otherwise; the outputs agree within 1e-4')
    add_precision(p)
    add_compile(p, 'run the network')
    p.add_argument('--batch', type=positive_int, default=1, metavar='B',
                   help='images of equal size per forward pass; with --tile, tiles per forward pass (1)')
    p.add_argument('--overwrite', action='store_true', help='replace existing output files')
    p.add_argument('--reference', action='store_true', help='use the reference (slower) forward path')
    add_threads(p)
    return p


def models_parser(prog: str) -> argparse.ArgumentParser:
    """`ramit models`."""
    return argparse.ArgumentParser(prog=prog, description='List the published RAMiT checkpoints (use a name with '
                                   '--weights; it is downloaded once into the cache folder).')


def export_parser(prog: str) -> argparse.ArgumentParser:
    """`ramit export`."""
    p = argparse.ArgumentParser(prog=prog, description='Export a RAMiT checkpoint to ONNX with the evaluation '
                                'protocol in the graph (mirror padding to the padding unit, crop back; dynamic '
                                'batch, height and width), and write it only after onnxruntime gives what '
                                '`ramit infer` gives on photos.')
    p.add_argument('--weights', required=True, help='checkpoint file or published model name')
    p.add_argument('--onnx', required=True, type=Path, help='output .onnx file')
    p.add_argument('--opset', type=int, default=17, help='ONNX opset (17)')
    add_checkpoint_checks(p)
    p.add_argument('--half', action='store_true',
                   help='float16 model (weights, input and output); checked against the float32 network')
    p.add_argument('--tolerance', type=float, default=None,
                   help='max allowed |onnx - torch| (1e-4; with --half 2/255 at the 99th percentile and 8/255 '
                        'at most, in output units)')
    p.add_argument('--overwrite', action='store_true', help='replace the --onnx file if it exists')
    p.add_argument('--check-images', nargs='+', metavar='IMAGE',
                   help='photos to check the export on (default: two small photos shipped with the package)')
    return p


def convert_parser(prog: str) -> argparse.ArgumentParser:
    """`ramit convert`."""
    p = argparse.ArgumentParser(prog=prog, description='Write any RAMiT checkpoint as a .safetensors file: the '
                                'weights (EMA weights when the file has them) and the network description (variant, '
                                'task, scale, every hyper-parameter), so that ramit infer, BasicSR, mmengine and '
                                'spandrel (chaiNNer, ComfyUI) load it without --task/--variant/--scale. Reading it '
                                'never unpickles anything.')
    p.add_argument('input', metavar='IN', help='checkpoint file (raw, BasicSR, mmengine, DDP, safetensors) or a '
                                               'published model name')
    p.add_argument('output', metavar='OUT.safetensors', type=Path, help='file to write (atomically)')
    add_checkpoint_checks(p)
    p.add_argument('--overwrite', action='store_true', help='replace OUT if it exists')
    return p


BENCH_DESCRIPTION = """Benchmark RAMiT (random-init weights unless --weights: speed does not depend on them).

Default: inference latency per input size, reference vs fast path (and compiled with --compile), interleaved.
--train: training steps (Adam, L1, synthetic or --data batches) for reference/fast/compiled x each --amp.
--protocol ntire: the NTIRE Efficient-SR protocol: float32, whole images of --images one by one, CUDA-event
timing, mean ms per image, multiply-adds at 256x256 (NTIRE's "FLOPs"), parameters.
Every table starts with the device, driver and torch version."""


def bench_parser(prog: str) -> argparse.ArgumentParser:
    """`ramit bench`."""
    p = argparse.ArgumentParser(prog=prog, description=BENCH_DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--variant', default='RAMiT-1', choices=tuple(VARIANTS))
    p.add_argument('--task', choices=tuple(TASKS), help='task (default: sr; with --weights, needed only where the '
                                                        'checkpoint does not tell it)')
    p.add_argument('--scale', type=int, help='SR scale (2 for sr; 1 otherwise)')
    p.add_argument('--weights', metavar='W',
                   help='benchmark the network of this checkpoint (file or published name) instead of '
                        '--variant/--task/--scale')
    p.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    add_threads(p)
    add_precision(p)
    add_compile(p, 'also time the fast path')
    p.add_argument('--no-reference', action='store_true', help='skip the reference path')
    p.add_argument('--backends', default='torch,onnxruntime',
                   help='backends to time side by side: torch (reference, fast, compiled) and onnxruntime '
                        '(float32/float16, when installed) (torch,onnxruntime)')
    p.add_argument('--batch', type=positive_int, default=None,
                   help='images per forward pass (1), or per training step with --train (32)')
    p.add_argument('--warmup', type=int, default=None, help='untimed calls or steps before timing (1; --train 3)')
    p.add_argument('--json', action='store_true', help='print the results as JSON')
    latency = p.add_argument_group('inference latency (default mode)')
    latency.add_argument('--sizes', default='128,256,512', help='comma-separated square input sizes (128,256,512)')
    latency.add_argument('--repeats', type=positive_int, default=5, help='timed repeats per path and size (5)')
    latency.add_argument('--tiled-peak', type=int, metavar='SIZE',
                         help='also measure peak RSS of `ramit infer --tile` on a SIZE x SIZE image (subprocess)')
    latency.add_argument('--tile', type=positive_int, default=256, help='tile for --tiled-peak (256)')
    train = p.add_argument_group('training steps (--train)')
    train.add_argument('--train', action='store_true', help='time training steps instead of inference')
    train.add_argument('--patch', type=positive_int, default=64, help='LR patch size (64)')
    train.add_argument('--amp', default='none,bf16',
                       help='comma-separated autocast dtypes to time: none, bf16, fp16 (none,bf16)')
    train.add_argument('--steps', type=positive_int, default=20, help='timed steps per case (20)')
    train.add_argument('--data', type=Path, metavar='X.yml',
                       help="also time the train dataloader of this BasicSR option file (real data, its workers) "
                            'and the fast path fed by it, against synthetic batches')
    ntire = p.add_argument_group('NTIRE Efficient-SR protocol (--protocol ntire)')
    ntire.add_argument('--protocol', choices=('ntire',), help='time whole images the NTIRE way')
    ntire.add_argument('--images', type=Path, metavar='DIR', help='folder of LR images for --protocol ntire')
    return p


# ------------------------------------------------------------------------------------------------------- mmengine
def mm_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """Arguments both mmengine commands share: CONFIG, --work-dir, --cfg-options, --launcher, --threads."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument('config', help='mmengine Python config, e.g. options/mmengine_RAMiT_SRx2.py')
    parser.add_argument('--work-dir', help='folder for logs and checkpoints (default: work_dirs/<config name>)')
    # Kept as strings here; mmengine's DictAction turns them into values once the command runs.
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='override config keys, e.g. train_cfg.max_iters=1000 model.generator.variant=RAMiT-1')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none', help='job launcher (default: none)')
    # torch.distributed.launch passes --local_rank (older) or --local-rank; torchrun sets LOCAL_RANK instead.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)
    add_threads(parser)
    return parser


def mm_train_parser(prog: str) -> argparse.ArgumentParser:
    """`ramit mm-train`."""
    parser = mm_parser(prog, "Train RAMiT with mmengine's Runner from a Python config.")
    parser.add_argument('--resume', nargs='?', const='auto', metavar='CHECKPOINT',
                        help="resume training: from the work dir's latest checkpoint, or from CHECKPOINT")
    return parser


def mm_test_parser(prog: str) -> argparse.ArgumentParser:
    """`ramit mm-test`."""
    parser = mm_parser(prog, "Test a RAMiT checkpoint with mmengine's Runner from a Python config.")
    parser.add_argument('--checkpoint', required=True,
                        help="weights: the authors' raw state dict, a BasicSR or an mmengine checkpoint, or a "
                             '.safetensors file')
    return parser


def hook_parser(prog: str) -> argparse.ArgumentParser:
    """`ramit hook`."""
    parser = argparse.ArgumentParser(
        prog=prog, description='The opt-in start-up hook (a .pth file in this environment\'s site-packages): when an '
        'application imports spandrel (chaiNNer, any spandrel host), RAMiT is registered in it, and a plain '
        '`import basicsr` works on current torchvision. It costs an interpreter that never imports them well under '
        'a millisecond.')
    parser.add_argument('action', choices=('install', 'remove', 'status'))
    return parser
