"""RAMiTModel in BasicSR's MODEL_REGISTRY (importing registers it)."""
from .ramit_model import RAMiTModel  # noqa: F401
