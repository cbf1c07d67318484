"""RAMiT for mmengine: importing this package registers everything into ``ramit_plugin.registry``.

mmengine imports it on demand (the registries' ``locations``); see ``options/mmengine_RAMiT_SRx2.py``.
"""
from .. import mmengine_import  # noqa: F401  (first: imports mmengine one process at a time)
from . import datasets, hooks, losses, metrics, restorer, transforms  # noqa: F401
from .runtime import allow_mmengine_checkpoints

# mmengine's Runner loads its own checkpoints with torch.load's weights_only default (torch >= 2.6).
allow_mmengine_checkpoints()
