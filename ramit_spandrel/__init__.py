"""RAMiT as a spandrel architecture, so chaiNNer, ComfyUI and other spandrel users open RAMiT checkpoints.

``import ramit_spandrel`` adds ``RAMiTArch`` (id 'RAMiT') to ``spandrel.MAIN_REGISTRY``; ``import ramit_plugin``
does it too when spandrel is installed, and so does the opt-in start-up hook (``ramit hook install``) the moment an
application imports spandrel. ``spandrel.ModelLoader().load_from_file(path)`` then opens every RAMiT checkpoint from
the file alone (raw, BasicSR ``params``/``params_ema``, this package's own, ``ramit convert`` safetensors; custom
sizes too): the network is rebuilt by ``ramit.checkpoint.infer_arguments`` and is the same ``RAMiT`` object the rest
of the package runs. Only ``ramit`` (torch) and spandrel are imported: no training framework.

Colour denoising, low-light enhancement and deraining networks of one size have identical shapes. Their task
comes from the network description in the tensors (``ramit convert`` files and ``logger: save_safetensors``
checkpoints carry it; spandrel drops everything but the tensors, so a ``.pth``'s description does not arrive);
else, for the shapes of a published variant with one such task (RAMiT-1: CDN, RAMiT-slimLLE: LLE), that task;
else (the base variant, published as CDN, LLE and DR, and custom sizes) the environment variable
``RAMIT_SPANDREL_TASK`` (``dn``, ``lle`` or ``dr``), read at each load; else ``dn``.
"""
import logging
import os
from typing import Tuple

import spandrel
from spandrel import ArchSupport, Architecture, ImageModelDescriptor, ModelTiling, SizeRequirements, StateDict
from spandrel.util import KeyCondition

from ramit.checkpoint import (ANCHOR, CheckpointError, candidate_tasks, description_of, infer_arguments, load_weights,
                              select_state_dict)
from ramit.hub import PUBLISHED
from ramit.network import RAMiT
from ramit.protocol import protocol_forward

ARCH_ID = 'RAMiT'
TASK_ENV = 'RAMIT_SPANDREL_TASK'
DEFAULT_TASK = 'dn'
# Keys every RAMiT network has whatever its size (SP-SA or CH-SA heads, qkv biases and tail MobiVaris can be absent).
HAS_RAMIT_KEYS = KeyCondition.has_all(
    ANCHOR, 'stage1.blocks.block0.qkv_proj.qkv.weight', 'stage1.blocks.block0.mobivari.pw_conv.weight',
    'down1.reduction.pw_conv.weight', 'bottleneck.mobivari.pw_conv.weight', 'stage4.blocks.block0.ffn.hidden.weight',
    'attn_mix.mobivari.pw_conv.weight', 'to_target.conv.weight', 'to_target.final_conv.weight')
logger = logging.getLogger(__name__)


def detect(state_dict: StateDict) -> bool:
    """Whether ``state_dict`` holds a RAMiT network, under any common prefix (mmengine's 'generator.')."""
    anchors = [k for k in state_dict if k.endswith(ANCHOR)]
    if len(anchors) != 1:
        return False
    prefix = anchors[0][:-len(ANCHOR)]
    return HAS_RAMIT_KEYS({k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)})


def scale1_task(sd: StateDict, tasks: Tuple[str, ...]) -> str:
    """The task of a checkpoint without a description whose shapes fit several (dn/lle/dr): the one published task
    of its variant when it has exactly those shapes, else $RAMIT_SPANDREL_TASK, else DEFAULT_TASK (logged, since a
    wrong guess gives a wrongly normalised output, not an error)."""
    arguments = infer_arguments(sd, {}, tasks[0])
    published = {m.task for m in PUBLISHED.values() if m.variant == arguments['variant'] and m.task in tasks}
    if len(published) == 1 and set(arguments) == {'variant', 'task', 'upscale'}:
        return published.pop()
    chosen = os.environ.get(TASK_ENV, '').strip()
    if not chosen:
        logger.warning('RAMiT: this scale-1 colour checkpoint does not say its task (%s have identical shapes); '
                       'loaded as %s (colour denoising). For low-light or deraining set %s=lle or dr, or convert '
                       'it with `ramit convert --task`.', '/'.join(tasks), DEFAULT_TASK, TASK_ENV)
        return DEFAULT_TASK
    if chosen not in tasks:
        raise CheckpointError(f"{TASK_ENV}={chosen}: not a task of this checkpoint; valid: {', '.join(tasks)}")
    return chosen


class RAMiTArch(Architecture[RAMiT]):
    """spandrel's view of RAMiT: detection from keys, loading through ramit.checkpoint."""

    def __init__(self) -> None:
        super().__init__(id=ARCH_ID, name='RAMiT', detect=detect)

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[RAMiT]:
        """The descriptor of a detected RAMiT state dict (its network rebuilt from shapes and metadata)."""
        description = description_of(state_dict, 'spandrel state dict')
        sd = select_state_dict(state_dict, 'spandrel state dict')
        tasks = candidate_tasks(sd, description)
        arguments = infer_arguments(sd, description, tasks[0] if len(tasks) == 1 else scale1_task(sd, tasks))
        net = load_weights(RAMiT(**arguments), sd).eval()
        tags = [arguments['variant'], net.task, f"{net.hparams['dim']}dim"]
        if set(arguments) - {'variant', 'task', 'upscale'}:
            tags.append('custom')
        return ImageModelDescriptor(
            net, sd, architecture=self, purpose='SR' if net.upscale > 1 else 'Restoration', tags=tags,
            # Half types run end to end: the network keeps its overflow-prone sums in float32 (ramit.network).
            supports_half=True, supports_bfloat16=True, scale=net.upscale, input_channels=net.in_chans,
            output_channels=net.in_chans,
            # Any size works: the network pads to its pad_unit itself; the call pads by the paper's protocol.
            size_requirements=SizeRequirements(), tiling=ModelTiling.SUPPORTED,
            # The paper's evaluation protocol, as `ramit infer` and the toolboxes' test loops run it.
            call_fn=protocol_forward)


def register(registry: spandrel.ArchRegistry = spandrel.MAIN_REGISTRY) -> None:
    """Add RAMiT to ``registry`` (spandrel's main registry by default); an architecture already there with id
    'RAMiT' (e.g. a later spandrel release's own) is kept."""
    registry.add(ArchSupport.from_architecture(RAMiTArch()), ignore_duplicates=True)


register()
