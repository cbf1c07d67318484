"""Inference on users' images: the network of any checkpoint, the backends that run it (PyTorch, onnxruntime),
whole or tiled passes, and the names of the outputs.

Every pass (whole image or tile, on every backend) follows the paper's evaluation protocol: symmetric padding to a
multiple of the network's pad_unit (32 for the published models), then the output is cropped back
(``ramit.protocol``).
"""
import os
from collections import Counter
from pathlib import Path
from typing import List, Optional, Sequence

import torch

from .checkpoint import candidate_tasks, check_weights, infer_arguments, load_weights, read_checkpoint
from .errors import CheckpointError, OptionError
from .hparams import describe
from .hub import PublishedModel, lookup
from .images import written_by
from .network import RAMiT
from .protocol import protocol_forward
from .tiling import Run, tiled_forward

Tensor = torch.Tensor
# What `ramit infer` writes into its PNG outputs' text chunk: an output there may be replaced by --overwrite.
WRITER = 'ramit infer'


def load_network(checkpoint: os.PathLike, variant: Optional[str] = None, task: Optional[str] = None,
                 scale: Optional[int] = None, published: Optional[PublishedModel] = None,
                 fast: Optional[bool] = None) -> RAMiT:
    """The network of any RAMiT checkpoint (custom sizes included), in eval mode with the weights loaded.

    Its hyper-parameters come from the checkpoint (``ramit.checkpoint.infer_arguments``). ``variant``/``scale`` are
    checked against it; ``task`` settles 3-channel scale-1 checkpoints (denoising, low-light, deraining have
    identical shapes) unless the file's description or a published file name (``published``, else the file's own
    name) tells it.
    CheckpointError (one line) when a flag contradicts the checkpoint, the task stays open or a weight is unusable.
    """
    sd, description, _ = read_checkpoint(checkpoint)
    name = os.fspath(checkpoint)
    published = published or lookup(os.path.basename(name))
    check_weights(sd, name)  # every command would otherwise turn them into garbage images or a NaN model file
    tasks = candidate_tasks(sd, description)
    if task is not None and task not in tasks:
        raise CheckpointError(f'{name}: --task {task} contradicts the checkpoint, which fits task(s) '
                              f'{"/".join(tasks)}')
    if task is None and published is not None and published.task in tasks:
        task = published.task
    if task is None and len(tasks) > 1:
        base = infer_arguments(sd, description, tasks[0], label=name)['variant']
        raise CheckpointError(f'{name}: a {base} scale-1 checkpoint can be any of {"/".join(tasks)} (same shapes); '
                              'give --task')
    arguments = infer_arguments(sd, description, task or tasks[0], label=name)
    custom = set(arguments) - {'variant', 'task', 'upscale'}
    if variant is not None and (variant != arguments['variant'] or custom):
        raise CheckpointError(f'{name}: --variant {variant} contradicts the checkpoint, which is '
                              f'{describe(arguments)}')
    if scale is not None and scale != arguments['upscale']:
        raise CheckpointError(f"{name}: --scale {scale} contradicts the checkpoint, which is x{arguments['upscale']}")
    return load_weights(RAMiT(**arguments, fast=fast), sd, label=name).eval()


def torch_run(net: torch.nn.Module) -> Run:
    """The PyTorch backend's pass: the protocol around ``net`` (or its compiled form), without gradients."""
    def run(batch: Tensor) -> Tensor:
        with torch.no_grad():
            return protocol_forward(net, batch)
    return run


def restore_tensor(run: Run, batch: Tensor, scale: int, tile: Optional[int] = None, overlap: int = 16,
                   tile_batch: int = 1) -> Tensor:
    """Restore [B, C, H, W] images in [0, 1] with a backend's ``run``, whole or in tiles; float32 CPU output, not
    clamped."""
    if tile is not None and (batch.shape[-2] > tile or batch.shape[-1] > tile):
        outs = [tiled_forward(run, img[None], scale, tile, overlap, tile_batch) for img in batch]
        return outs[0] if len(outs) == 1 else torch.cat(outs)  # no copy of a large single output
    return run(batch).float().cpu()


# ---------------------------------------------------------------------------------------------------- outputs
def output_name(stem: str, net: RAMiT) -> str:
    """'<stem>_RAMiT_x2.png' for SR, '<stem>_RAMiT_<task>.png' (dn, graydn, lle, dr) otherwise."""
    tag = f'x{net.upscale}' if net.task == 'sr' else net.task
    return f'{stem}_RAMiT_{tag}.png'


def earlier_outputs(files: Sequence[Path], out_dir: Path) -> List[Path]:
    """The ``files`` in ``out_dir`` that `ramit infer` wrote (their PNG text chunk says so): outputs, not inputs."""
    return [p for p in files if p.parent.resolve() == out_dir.resolve() and written_by(p) == WRITER]


def output_names(files: Sequence[Path], net: RAMiT) -> List[str]:
    """Output names of ``files``, one per file: inputs whose stems collide (a.png, a.jpg) keep their extension in
    the name ('a_png_RAMiT_x2.png', 'a_jpg_RAMiT_x2.png'); OptionError when two inputs would still share one."""
    stems = Counter(p.stem for p in files)
    names = [output_name(p.stem if stems[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower()}", net)
             for p in files]
    first = {}
    for path, name in zip(files, names):
        if name in first:
            raise OptionError(f'{first[name]} and {path} would both be written as {name}; '
                              'rename one or restore them in separate runs')
        first[name] = path
    return names
