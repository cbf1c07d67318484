"""BasicSR models of the plugin; importing registers RAMiTModel in MODEL_REGISTRY."""
from .ramit_model import NonFiniteLossError, RAMiTModel, build_losses, load_pretrained  # noqa: F401
