"""ramit-plugin: the RAMiT restoration network as a BasicSR plugin, also registered into mmengine (and into spandrel
when it is installed)."""
import importlib.util

from . import compat  # noqa: F401  (must run before anything imports basicsr)
from .archs import RAMiT, resolve_config  # noqa: F401
from .checkpoint import describe_state_dict, infer_config, load_checkpoint, read_checkpoint  # noqa: F401
from .complexity import count_macs, count_params  # noqa: F401
from . import data, losses  # noqa: F401
from . import models  # noqa: F401

if importlib.util.find_spec('spandrel') is not None:
    from . import spandrel  # noqa: F401  (registers RAMiT in spandrel.MAIN_REGISTRY: chaiNNer, ComfyUI)

__version__ = '0.1.0'
