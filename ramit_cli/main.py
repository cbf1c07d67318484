"""Dispatch `ramit` / `basicsr` commands: parse first (fast, stdlib only), then import and run the implementation.

A RamitError from any command is printed here, once, as ``<prog>: error: <message>`` on stderr, and its exit
code (2 for bad input, 1 for a failed run) is returned.
"""
import importlib
import os
import sys
from typing import Callable, List, NamedTuple, Optional

from . import parsers


class Command(NamedTuple):
    """A command: its parser, where its implementation lives (module, function) and one line of help."""

    parser: Callable
    module: str
    function: str
    help: str


COMMANDS = {
    'train': Command(parsers.train_parser, 'ramit_plugin.cli.basicsr_cmd', 'run_train',
                     "train with BasicSR's train_pipeline from an option YAML"),
    'test': Command(parsers.test_parser, 'ramit_plugin.cli.basicsr_cmd', 'run_test',
                    "test with BasicSR's test_pipeline from an option YAML"),
    'demo': Command(parsers.demo_parser, 'ramit_plugin.cli.demo', 'run',
                    'build a small dataset from bundled photos, train and validate RAMiT'),
    'make-lmdb': Command(parsers.make_lmdb_parser, 'ramit_plugin.cli.data_prep', 'run_make_lmdb',
                         'pack an image folder (or LQ/GT pair) into LMDB'),
    'make-lr': Command(parsers.make_lr_parser, 'ramit_plugin.cli.data_prep', 'run_make_lr',
                       'MATLAB-style bicubic downscaling of an HR folder'),
    'extract-subimages': Command(parsers.extract_subimages_parser, 'ramit_plugin.cli.data_prep',
                                 'run_extract_subimages', 'crop DIV2K-style images into overlapping sub-images'),
    'infer': Command(parsers.infer_parser, 'ramit_plugin.cli.infer', 'run',
                     'restore your own images with any RAMiT checkpoint (tiled, any size)'),
    'models': Command(parsers.models_parser, 'ramit_plugin.cli.models', 'run',
                      'list the published checkpoints and whether they are cached'),
    'export': Command(parsers.export_parser, 'ramit_plugin.cli.export', 'run', 'export a RAMiT checkpoint to ONNX'),
    'convert': Command(parsers.convert_parser, 'ramit_plugin.cli.convert', 'run',
                       'write a RAMiT checkpoint as .safetensors with its network description (no flags needed later)'),
    'bench': Command(parsers.bench_parser, 'ramit_plugin.cli.bench', 'run',
                     'latency, memory, parameters and multiply-adds'),
    'mm-train': Command(parsers.mm_train_parser, 'ramit_plugin.cli.mm', 'run_train',
                        "train with mmengine's Runner from a Python config"),
    'mm-test': Command(parsers.mm_test_parser, 'ramit_plugin.cli.mm', 'run_test',
                       "test with mmengine's Runner from a Python config"),
}


def usage(prog: str) -> str:
    """Top-level help text listing every command."""
    width = max(map(len, COMMANDS))
    lines = [f'usage: {prog} <command> [options]   ({prog} <command> --help for its options)', '', 'commands:']
    lines += [f'  {name:<{width}}  {command.help}' for name, command in COMMANDS.items()]
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None, prog: Optional[str] = None) -> int:
    """Entry point of the `ramit` and `basicsr` console scripts (``prog`` defaults to the script's name)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if prog is None:
        prog = 'basicsr' if sys.argv and os.path.basename(sys.argv[0]) == 'basicsr' else 'ramit'
    if not argv or argv[0] in ('-h', '--help', 'help'):
        print(usage(prog))
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"{prog}: error: unknown command {name!r}; valid commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    command = COMMANDS[name]
    prog = f'{prog} {name}'
    args = command.parser(prog).parse_args(rest)  # --help and usage errors exit here, before any heavy import
    run = getattr(importlib.import_module(command.module), command.function)
    from ramit_plugin.errors import RamitError

    try:
        return int(run(args, prog) or 0)
    except RamitError as err:
        print(f'{prog}: error: {err}', file=sys.stderr)
        return err.exit_code
