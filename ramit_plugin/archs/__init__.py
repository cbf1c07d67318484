"""RAMiT network, registered in BasicSR's ARCH_REGISTRY as 'RAMiT'."""
from .ramit_arch import RAMiT, VARIANTS, TASKS, HYPER_PARAMETERS, resolve_config, describe_config  # noqa: F401
