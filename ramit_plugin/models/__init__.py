"""BasicSR models of the plugin; importing registers RAMiTModel in MODEL_REGISTRY."""
from .ramit_model import NonFiniteLossError, RAMiTModel, build_losses  # noqa: F401
