"""`ramit make-lmdb`, `make-lr` and `extract-subimages`: BasicSR's dataset preparation (``ramit_plugin.dataprep``)."""
import argparse

from ramit_plugin.dataprep import extract_subimages, make_lmdb, make_lr


def run_make_lmdb(args: argparse.Namespace, prog: str) -> int:
    """`ramit make-lmdb`: pack an image folder into a BasicSR LMDB."""
    keys = make_lmdb(args.input, args.output, args.overwrite, args.compress_level, args.n_thread,
                     not args.keep_names, args.recursive)
    print(f'{prog}: wrote {len(keys)} images to {args.output} (keys {keys[0]} ... {keys[-1]}, meta_info.txt)')
    return 0


def run_make_lr(args: argparse.Namespace, prog: str) -> int:
    """`ramit make-lr`: MATLAB-style bicubic downscaling of an HR folder."""
    count = make_lr(args.input, args.output, args.scale, args.overwrite, args.n_thread, args.hr_output)
    print(f'{prog}: wrote {count} LR images x{args.scale} to {args.output}')
    return 0


def run_extract_subimages(args: argparse.Namespace, prog: str) -> int:
    """`ramit extract-subimages`: crop DIV2K-style images into overlapping sub-images."""
    count = extract_subimages(args.input, args.output, args.crop_size, args.step, args.thresh_size, args.overwrite,
                              args.n_thread, args.compress_level)
    print(f'{prog}: wrote {count} sub-images to {args.output}')
    return 0
