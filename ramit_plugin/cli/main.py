"""Dispatch `ramit`/`basicsr` sub-commands; each command lives in its own module, imported only when used."""
import importlib
import sys
from typing import List, Optional

# name -> (module, function, one-line help). Each function takes the argument list after the command name.
COMMANDS = {
    'train': ('ramit_plugin.cli.basicsr_cmd', 'train_main', "train with BasicSR's train_pipeline from an option YAML"),
    'test': ('ramit_plugin.cli.basicsr_cmd', 'test_main', "test with BasicSR's test_pipeline from an option YAML"),
    'demo': ('ramit_plugin.cli.demo', 'main', 'build a small dataset from bundled photos, train and validate RAMiT'),
    'make-lmdb': ('ramit_plugin.cli.data_prep', 'make_lmdb_main', 'pack an image folder (or LQ/GT pair) into LMDB'),
    'make-lr': ('ramit_plugin.cli.data_prep', 'make_lr_main', 'MATLAB-style bicubic downscaling of an HR folder'),
    'extract-subimages': ('ramit_plugin.cli.data_prep', 'extract_subimages_main',
                          'crop DIV2K-style images into overlapping sub-images'),
    'infer': ('ramit_plugin.cli.infer', 'main', 'restore your own images (tiled, any size)'),
    'models': ('ramit_plugin.cli.models', 'main', 'list the published checkpoints and whether they are cached'),
    'export': ('ramit_plugin.cli.export', 'main', 'export a RAMiT checkpoint to ONNX'),
    'bench': ('ramit_plugin.cli.bench', 'main', 'latency, memory, parameters and multiply-adds'),
    'mm-train': ('ramit_plugin.cli.mm', 'train_main', "train with mmengine's Runner from a Python config"),
    'mm-test': ('ramit_plugin.cli.mm', 'test_main', "test with mmengine's Runner from a Python config"),
}


def usage(prog: str) -> str:
    """Top-level help text listing every command."""
    width = max(map(len, COMMANDS))
    lines = [f'usage: {prog} <command> [options]   ({prog} <command> --help for its options)', '', 'commands:']
    lines += [f'  {name:<{width}}  {help_}' for name, (_, _, help_) in COMMANDS.items()]
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the `ramit` and `basicsr` console scripts."""
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = 'basicsr' if sys.argv and sys.argv[0].endswith('basicsr') else 'ramit'
    if not argv or argv[0] in ('-h', '--help', 'help'):
        print(usage(prog))
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"{prog}: unknown command {name!r}; valid commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module, func, _ = COMMANDS[name]
    result = getattr(importlib.import_module(module), func)(rest, prog=f'{prog} {name}')
    return int(result or 0)


if __name__ == '__main__':
    sys.exit(main())
