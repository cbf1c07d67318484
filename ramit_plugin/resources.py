"""Locate the option files, in a source checkout (options/) or an installed wheel (ramit_plugin/options)."""
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def options_dir() -> Path:
    """Folder holding the option YAMLs and mmengine configs that ship with the plugin."""
    checkout = PACKAGE_DIR.parent / 'options'
    return checkout if checkout.is_dir() else PACKAGE_DIR / 'options'


def option_file(name: str) -> Path:
    """Path of a shipped option file such as 'demo_RAMiT_SRx2.yml'; FileNotFoundError names the folder."""
    path = options_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f'option file {name!r} not found in {options_dir()}')
    return path
