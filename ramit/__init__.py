"""RAMiT (Choi et al., CVPR 2024 Workshops): the network and everything to run it — checkpoints, the evaluation
protocol, inference and tiling, precision, compilation, ONNX. It imports no training framework: the BasicSR and
mmengine adapters live in ``ramit_plugin``, the spandrel one in ``ramit_spandrel``.

The names below are loaded on first use, so ``import ramit`` (and the command line, which reads its choices from
``ramit.hparams``) costs nothing until a name that needs torch is touched.
"""
import importlib
from typing import Any

__version__ = '0.2.0'

# name -> module that defines it
_EXPORTS = {
    'RAMiT': 'ramit.network',
    'resolve_hparams': 'ramit.hparams', 'describe': 'ramit.hparams', 'VARIANTS': 'ramit.hparams',
    'TASKS': 'ramit.hparams',
    'read_checkpoint': 'ramit.checkpoint', 'load_weights': 'ramit.checkpoint', 'infer_arguments': 'ramit.checkpoint',
    'write_safetensors': 'ramit.checkpoint', 'describe_state_dict': 'ramit.checkpoint',
    'load_network': 'ramit.inference', 'restore_tensor': 'ramit.inference', 'torch_run': 'ramit.inference',
    'protocol_forward': 'ramit.protocol',
    'count_params': 'ramit.complexity', 'count_macs': 'ramit.complexity',
    'export_onnx': 'ramit.export',
    'RamitError': 'ramit.errors',
}
__all__ = sorted(_EXPORTS) + ['__version__']


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` when it is first used (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
