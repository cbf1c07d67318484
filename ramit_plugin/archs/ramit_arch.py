"""RAMiT in BasicSR's ARCH_REGISTRY as 'RAMiT' (``network_g: {type: RAMiT, variant: ..., task: ..., upscale: ...}``).

The network itself is ``ramit.network.RAMiT``: the class registered here is that very class, so BasicSR, mmengine
and spandrel build identical networks.
"""
from basicsr.utils.registry import ARCH_REGISTRY

from ramit.network import RAMiT

ARCH_REGISTRY.register(RAMiT)
