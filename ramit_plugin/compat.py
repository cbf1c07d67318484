"""Make the unmodified PyPI basicsr 1.4.2 importable on current torchvision.

basicsr/data/degradations.py does ``from torchvision.transforms.functional_tensor import rgb_to_grayscale``;
torchvision 0.17 removed that private module (the function lives on in ``functional``). We register an alias
module holding exactly that function, and nothing else, before basicsr is first imported.
"""
import importlib.util
import sys
import types

LEGACY_MODULE = 'torchvision.transforms.functional_tensor'


def install_torchvision_shim() -> None:
    """Register torchvision.transforms.functional_tensor if this torchvision no longer ships it."""
    if LEGACY_MODULE in sys.modules or importlib.util.find_spec(LEGACY_MODULE) is not None:
        return
    from torchvision.transforms.functional import rgb_to_grayscale

    shim = types.ModuleType(LEGACY_MODULE, 'Alias added by ramit_plugin.compat for basicsr 1.4.2.')
    shim.rgb_to_grayscale = rgb_to_grayscale
    sys.modules[LEGACY_MODULE] = shim


install_torchvision_shim()
