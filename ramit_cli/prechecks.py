"""What each command checks about its arguments and inputs before torch, basicsr or mmengine load (seconds, and
tens of seconds on a busy machine): a bad argument is answered at once, in one line. Each function takes the parsed
arguments and may add what it read (``args.options``, ``args.files``) for the command to use."""
import argparse
import os
from pathlib import Path

from ramit.errors import OptionError
from ramit.hub import check_weights_name
from ramit.images import expand_inputs

from .options import read_option_file


def basicsr_train(args: argparse.Namespace) -> None:
    """`basicsr train`: the option file, read and checked with --force_yml applied."""
    args.options = read_option_file(args.opt, args.force_yml or [], is_train=True)


def basicsr_test(args: argparse.Namespace) -> None:
    """`basicsr test`: the option file, read and checked with --force_yml applied."""
    args.options = read_option_file(args.opt, args.force_yml or [], is_train=False)


def infer(args: argparse.Namespace) -> None:
    """`ramit infer`: tiling options, the inputs, the output folder, the weights."""
    if args.tile not in (None, 'auto') and not args.tile > args.tile_overlap >= 0:
        raise OptionError(f'--tile {args.tile} --tile-overlap {args.tile_overlap}: need --tile > --tile-overlap >= 0')
    if args.max_memory and args.tile != 'auto':
        raise OptionError('--max-memory plans the tiles of --tile auto; add --tile auto')
    if args.backend == 'onnxruntime' and (args.compile or args.reference or args.bf16):
        raise OptionError('--backend onnxruntime runs the exported graph: --compile, --reference and --bf16 are '
                          'options of --backend torch')
    args.files = expand_inputs(args.input)
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise OptionError(f'-o {out_dir}: is a file; -o names the folder the outputs go to')
    if out_dir.is_dir() and not os.access(out_dir, os.W_OK | os.X_OK):
        raise OptionError(f'-o {out_dir}: this folder is not writable; nothing was restored')
    check_weights_name(args.weights)


def export(args: argparse.Namespace) -> None:
    """`ramit export`: the output file, the opset, the tolerance, the weights."""
    if args.onnx.is_dir():
        raise OptionError(f'--onnx {args.onnx}: is a folder; give the file to write, e.g. {args.onnx / "model.onnx"}')
    if not args.onnx.parent.is_dir():
        problem = 'is a file, not a folder' if args.onnx.parent.exists() else 'does not exist'
        raise OptionError(f'--onnx {args.onnx}: folder {args.onnx.parent} {problem}')
    if args.onnx.exists() and not args.overwrite:
        raise OptionError(f'--onnx {args.onnx} exists; --overwrite replaces it')
    if args.tolerance is not None and not args.tolerance > 0:
        raise OptionError(f'--tolerance {args.tolerance}: must be a positive number (the largest allowed difference)')
    for image in args.check_images or ():
        if not Path(image).is_file():
            raise OptionError(f'--check-images {image}: no such file')
    check_weights_name(args.weights)


def convert(args: argparse.Namespace) -> None:
    """`ramit convert`: the input."""
    check_weights_name(args.input, option='')


def bench(args: argparse.Namespace) -> None:
    """`ramit bench`: contradicting or missing arguments, sizes, the weights."""
    if args.protocol and args.train:
        raise OptionError('--protocol ntire and --train are different benchmarks; give one')
    if args.protocol == 'ntire':
        if args.images is None:
            raise OptionError('--protocol ntire needs --images DIR (the LR images to time)')
        if not args.images.is_dir():
            raise OptionError(f'--images {args.images}: no such folder')
        if args.half or args.bf16 or args.compile:
            raise OptionError('--protocol ntire times float32 eager inference, as the challenge does (no --half, '
                              '--bf16, --compile)')
    if args.train and args.data and not args.data.is_file():
        raise OptionError(f'--data {args.data}: no such option file')
    if args.train and (args.half or args.bf16):
        raise OptionError('--half/--bf16 convert the weights for inference; training steps take --amp bf16/fp16')
    try:
        args.size_list = [int(s) for s in args.sizes.split(',') if s.strip()]
    except ValueError:
        args.size_list = []
    if not args.size_list or min(args.size_list) < 1 or max(args.size_list) > 8192:
        raise OptionError(f'--sizes {args.sizes}: needs integers from 1 to 8192, e.g. 128,256')
    if args.weights:
        check_weights_name(args.weights)


def data_prep(args: argparse.Namespace) -> None:
    """`ramit make-lmdb/make-lr/extract-subimages`: the input folder."""
    if not args.input.is_dir():
        problem = 'is a file, not a folder' if args.input.exists() else 'no such folder'
        raise OptionError(f'--input {args.input}: {problem}')


def demo(args: argparse.Namespace) -> None:
    """`ramit demo`: the working folder can be made and written."""
    if args.iters is not None and args.iters < 1:
        raise OptionError(f'--iters {args.iters}: must be at least 1')
    folder = args.workdir
    if folder.exists() and not folder.is_dir():
        raise OptionError(f'--workdir {folder}: is a file; give a folder for the demo')
    existing = next((p for p in [folder, *folder.parents] if p.exists()), Path('.'))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OptionError(f'--workdir {folder}: {existing} is not writable')


def mm(args: argparse.Namespace) -> None:
    """`ramit mm-train/mm-test`: the config file (and the checkpoint of mm-test)."""
    if not Path(args.config).is_file():
        raise OptionError(f'config file not found: {args.config}')
    if getattr(args, 'checkpoint', None):
        check_weights_name(args.checkpoint, option='--checkpoint')
