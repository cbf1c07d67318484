"""Inference on users' images: a network from a checkpoint, whole or tiled forward passes, image reading and writing.

Every forward pass (whole image or tile) follows the paper's evaluation protocol: symmetric padding to a
multiple of the network's pad_unit (32 for the published models), then the output is cropped back
(``ramit_plugin.protocol``).
"""
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import cv2
import numpy as np
import torch

from .archs.ramit_arch import RAMiT
from .checkpoint import CheckpointError, candidate_tasks, describe, infer_config, load_checkpoint, read_checkpoint
from .errors import OptionError
from .fileio import atomic_output
from .hub import PublishedModel
from .image_files import IMAGE_EXTENSIONS, ImageFileError, decode, list_images
from .protocol import protocol_forward
from .tiling import tiled_forward

Tensor = torch.Tensor
# OpenCV's RGB -> gray weights (COLOR_RGB2GRAY), as the gray denoising models were trained with.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def build_network(checkpoint: os.PathLike, variant: Optional[str] = None, task: Optional[str] = None,
                  scale: Optional[int] = None, published: Optional[PublishedModel] = None,
                  fast: Optional[bool] = None) -> RAMiT:
    """The network of any RAMiT checkpoint (custom sizes included), in eval mode with the weights loaded.

    Its hyper-parameters come from the checkpoint (ramit_plugin.checkpoint.infer_config). ``variant``/``scale``
    are checked against it; ``task`` settles 3-channel scale-1 checkpoints (denoising, low-light, deraining have
    identical shapes) unless the file's metadata or a published file name (``published``) tells it.
    CheckpointError (one line) when a flag contradicts the checkpoint, the task stays open or a weight is NaN/inf.
    """
    sd, metadata = read_checkpoint(checkpoint)
    name = os.fspath(checkpoint)
    bad = [key for key, t in sd.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:  # every command would otherwise turn them into black images or a NaN model file
        raise CheckpointError(f'{name}: {len(bad)} tensor(s) hold NaN or inf values (e.g. {bad[0]}): a damaged or '
                              'diverged checkpoint')
    tasks = candidate_tasks(sd, metadata)
    if task is not None and task not in tasks:
        raise CheckpointError(f'{name}: --task {task} contradicts the checkpoint, which fits task(s) '
                              f'{"/".join(tasks)}')
    if task is None and published is not None and published.task in tasks:
        task = published.task
    if task is None and len(tasks) > 1:
        base = infer_config(sd, metadata, tasks[0], label=name)['variant']
        raise CheckpointError(f'{name}: a {base} scale-1 checkpoint can be any of {"/".join(tasks)} (same shapes); '
                              'give --task')
    config = infer_config(sd, metadata, task or tasks[0], label=name)
    custom = set(config) - {'variant', 'task', 'upscale'}
    if variant is not None and (variant != config['variant'] or custom):
        raise CheckpointError(f'{name}: --variant {variant} contradicts the checkpoint, which is {describe(config)}')
    if scale is not None and scale != config['upscale']:
        raise CheckpointError(f"{name}: --scale {scale} contradicts the checkpoint, which is x{config['upscale']}")
    net = RAMiT(**config, fast=fast)
    load_checkpoint(net, sd, label=name)
    return net.eval()


def restore(net: torch.nn.Module, batch: Tensor, tile: Optional[int] = None, overlap: int = 16,
            tile_batch: int = 1) -> Tensor:
    """Restore [B, C, H, W] images in [0, 1] (on the network's device/dtype); float32 CPU output, not clamped."""
    if tile is not None and (batch.shape[-2] > tile or batch.shape[-1] > tile):
        outs = [tiled_forward(net, img[None], tile, overlap, tile_batch) for img in batch]
        return outs[0] if len(outs) == 1 else torch.cat(outs)  # no copy of a large single output
    with torch.no_grad():
        return protocol_forward(net, batch).float().cpu()


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------
@dataclass
class LoadedImage:
    """An image as the network sees it, plus what is needed to write it back the same way."""

    rgb: np.ndarray            # float32 [H, W, C] in [0, 1], C = 3 (RGB) or 1
    alpha: Optional[np.ndarray]  # float32 [H, W] in [0, 1], or None
    max_value: int             # 255 or 65535: the bit depth to write back
    gray: bool                 # the file was single-channel


def read_image(path: os.PathLike) -> LoadedImage:
    """Read an 8/16-bit gray, colour or RGBA image; ImageFileError (one line) if unreadable or unsupported."""
    img = decode(path)
    if img.dtype == np.uint8:
        max_value = 255
    elif img.dtype == np.uint16:
        max_value = 65535
    else:
        raise ImageFileError(f'{path}: {img.dtype} images are not supported (only 8- and 16-bit)')
    img = img.astype(np.float32) / max_value
    if img.ndim == 2:
        img = img[:, :, None]
    alpha = None
    if img.shape[2] == 4:
        alpha = img[:, :, 3]
        img = img[:, :, :3]
    if img.shape[2] == 3:
        img = img[:, :, ::-1]  # OpenCV's BGR -> RGB
    elif img.shape[2] != 1:
        raise ImageFileError(f'{path}: images with {img.shape[2]} channels are not supported')
    return LoadedImage(np.ascontiguousarray(img), alpha, max_value, img.shape[2] == 1)


def to_network_channels(rgb: np.ndarray, in_chans: int) -> np.ndarray:
    """Gray into a colour network: replicated; colour into a gray network: OpenCV's gray weights."""
    if rgb.shape[2] == in_chans:
        return rgb
    if in_chans == 3:
        return np.repeat(rgb, 3, axis=2)
    return (rgb @ np.asarray(GRAY_WEIGHTS, dtype=np.float32))[:, :, None]


def from_network_channels(out: np.ndarray, gray: bool) -> np.ndarray:
    """Back to the file's layout: a gray input gets a gray output (OpenCV weights) from a colour network."""
    if gray and out.shape[2] == 3:
        return (out @ np.asarray(GRAY_WEIGHTS, dtype=np.float32))[:, :, None]
    return out


def upscale_alpha(alpha: np.ndarray, scale: int) -> np.ndarray:
    """Alpha resized by bicubic interpolation (clamped), as the network does not see it."""
    if scale == 1:
        return alpha
    h, w = alpha.shape
    return np.clip(cv2.resize(alpha, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC), 0, 1)


def encode_image(rgb: np.ndarray, alpha: Optional[np.ndarray], max_value: int) -> bytes:
    """PNG bytes of float [H, W, C] RGB/gray (+ alpha) in [0, 1], quantised to the original bit depth.

    ``rgb`` is clipped and scaled in place (outputs of tiled runs are hundreds of MB; no float copy).
    """
    img = rgb[:, :, ::-1] if rgb.shape[2] == 3 else rgb
    if alpha is not None:
        img = np.concatenate([img, alpha[:, :, None]], axis=2)
    dtype = np.uint8 if max_value == 255 else np.uint16
    np.clip(img, 0, 1, out=img)
    img *= max_value
    img = np.rint(img, out=img).astype(dtype)
    ok, buf = cv2.imencode('.png', np.ascontiguousarray(img))
    if not ok:
        raise ValueError('PNG encoding failed')
    return buf.tobytes()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place."""
    with atomic_output(path) as tmp:
        Path(tmp).write_bytes(data)


def output_name(stem: str, net: RAMiT) -> str:
    """'<stem>_RAMiT_x2.png' for SR, '<stem>_RAMiT_<task>.png' (dn, graydn, lle, dr) otherwise."""
    tag = f'x{net.upscale}' if net.task == 'sr' else net.task
    return f'{stem}_RAMiT_{tag}.png'


def earlier_outputs(files: Sequence[Path], out_dir: Path, net: RAMiT) -> List[Path]:
    """The ``files`` that are this network's outputs in ``out_dir`` (-o inside an input folder): not inputs."""
    suffix = output_name('', net)
    return [p for p in files if p.name.endswith(suffix) and p.parent.resolve() == out_dir.resolve()]


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


def expand_inputs(inputs: Sequence[str]) -> List[Path]:
    """Image files named by files, folders (their image files, not recursive) and globs, each once, in order.

    OptionError naming the first file, folder or pattern that gives no image.
    """
    import glob

    files: List[Path] = []
    for spec in inputs:
        path = Path(spec)
        if path.is_dir():
            found = list_images(path)
            if not found:
                raise OptionError(f"-i {spec}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
        elif path.is_file():
            found = [path]
        else:
            found = sorted(Path(m) for m in glob.glob(spec) if Path(m).is_file())
            if not found:
                raise OptionError(f'-i {spec}: no such file, folder or matching images')
        files += found
    return list(dict.fromkeys(files))
