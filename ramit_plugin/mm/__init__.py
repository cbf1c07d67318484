"""RAMiT for mmengine: importing this package registers everything into ``ramit_plugin.registry``.

mmengine imports it on demand (the registries' ``locations``); see ``options/mmengine_RAMiT_SRx2.py``.
"""
from . import datasets, hooks, losses, metrics, restorer, transforms  # noqa: F401
from .runtime import allow_mmengine_checkpoints

allow_mmengine_checkpoints()
