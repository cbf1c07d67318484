"""The RAMiT network in BasicSR's ARCH_REGISTRY (importing registers it)."""
from .ramit_arch import RAMiT  # noqa: F401
