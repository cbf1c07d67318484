"""Dispatch `ramit` / `basicsr` commands: parse (standard library), check the arguments and inputs (light modules),
then import and run the implementation.

A RamitError from any command is printed here, once, as ``<prog>: error: <message>`` on stderr, and its exit
code (2 for bad input, 1 for a failed run) is returned.
"""
import importlib
import os
import sys
from typing import Callable, List, NamedTuple, Optional

from . import parsers


class Command(NamedTuple):
    """A command: its parser, its light argument check (``prechecks``), where its implementation lives (module,
    function) and one line of help."""

    parser: Callable
    precheck: Optional[str]
    module: str
    function: str
    help: str


COMMANDS = {
    'train': Command(parsers.train_parser, 'basicsr_train', 'ramit_cli.basicsr_commands', 'run_train',
                     "train with BasicSR's pipeline from an option YAML"),
    'test': Command(parsers.test_parser, 'basicsr_test', 'ramit_cli.basicsr_commands', 'run_test',
                    "test with BasicSR's pipeline from an option YAML"),
    'demo': Command(parsers.demo_parser, 'demo', 'ramit_cli.demo', 'run',
                    'build a small dataset from bundled photos, train and validate RAMiT'),
    'make-lmdb': Command(parsers.make_lmdb_parser, 'data_prep', 'ramit_cli.data_prep', 'run_make_lmdb',
                         'pack an image folder (or LQ/GT pair) into LMDB'),
    'make-lr': Command(parsers.make_lr_parser, 'data_prep', 'ramit_cli.data_prep', 'run_make_lr',
                       'MATLAB-style bicubic downscaling of an HR folder'),
    'extract-subimages': Command(parsers.extract_subimages_parser, 'data_prep', 'ramit_cli.data_prep',
                                 'run_extract_subimages', 'crop DIV2K-style images into overlapping sub-images'),
    'infer': Command(parsers.infer_parser, 'infer', 'ramit_cli.infer', 'run',
                     'restore your own images with any RAMiT checkpoint (tiled, any size)'),
    'models': Command(parsers.models_parser, None, 'ramit_cli.models', 'run',
                      'list the published checkpoints and whether they are cached'),
    'export': Command(parsers.export_parser, 'export', 'ramit_cli.export', 'run',
                      'export a RAMiT checkpoint to ONNX (the evaluation protocol in the graph)'),
    'convert': Command(parsers.convert_parser, 'convert', 'ramit_cli.convert', 'run',
                       'write a RAMiT checkpoint as .safetensors with its network description (no flags needed later)'),
    'bench': Command(parsers.bench_parser, 'bench', 'ramit_cli.bench', 'run',
                     'latency per backend, memory, parameters and multiply-adds'),
    'mm-train': Command(parsers.mm_train_parser, 'mm', 'ramit_cli.mm', 'run_train',
                        "train with mmengine's Runner from a Python config"),
    'mm-test': Command(parsers.mm_test_parser, 'mm', 'ramit_cli.mm', 'run_test',
                       "test with mmengine's Runner from a Python config"),
    'hook': Command(parsers.hook_parser, None, 'ramit_cli.hook', 'run',
                    'opt-in start-up hook: RAMiT in every spandrel host (chaiNNer), plain `import basicsr` works'),
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
    from ramit.errors import RamitError

    try:
        if command.precheck:
            getattr(importlib.import_module('ramit_cli.prechecks'), command.precheck)(args)
        run = getattr(importlib.import_module(command.module), command.function)
        return int(run(args, prog) or 0)
    except RamitError as err:
        print(f'{prog}: error: {err}', file=sys.stderr)
        return err.exit_code
