"""ramit-plugin's adapters: ``import ramit_plugin`` registers RAMiT, RAMiTModel, the datasets and the losses in
BasicSR's registries; mmengine finds RAMiT's parts in its ``ramit_plugin`` scope (``ramit_plugin.registry``, filled
on first use); spandrel, when installed, gets the RAMiT architecture (``ramit_spandrel``).

The network and everything that runs it is ``ramit``, which imports no training framework.
"""
import importlib.util

from ramit import __version__  # noqa: F401
from ramit_hook import alias_functional_tensor

alias_functional_tensor()  # before basicsr is first imported: basicsr 1.4.2 needs it on current torchvision

from . import archs, data, losses, models  # noqa: E402,F401  (registers in BasicSR's registries)

if importlib.util.find_spec('spandrel') is not None:
    import ramit_spandrel  # noqa: E402,F401  (RAMiT in spandrel.MAIN_REGISTRY: chaiNNer, ComfyUI)
