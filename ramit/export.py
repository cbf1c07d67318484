"""ONNX: RAMiT with the evaluation protocol in the graph, checked on photos against `ramit infer`'s own function, and
onnxruntime as an inference backend.

The exported graph is ``ProtocolNetwork``: mirror padding to the padding unit, the network (fast path), the crop
back, with dynamic batch, height and width; float32, or float16 throughout with ``half`` (the network's float32
islands become casts). An export is written only after onnxruntime's output on the check photos equals
``restore_tensor`` with the PyTorch backend within the tolerance. The check photos are two small crops of
scikit-image's public-domain/CC0 sample photos (astronaut, coffee) shipped in ``ramit/photos``, unless others are
given.
"""
import copy
import hashlib
import os
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .errors import OptionError, RunError
from .fileio import atomic_output, make_folder
from .hub import cache_dir
from .images import read_image, to_network_channels
from .inference import restore_tensor, torch_run
from .network import RAMiT
from .protocol import ProtocolNetwork
from .tiling import Run

PHOTOS = Path(__file__).resolve().parent / 'photos'
DEFAULT_OPSET = 17
# |onnxruntime - torch float32|, in output units (1 = full range): float32 (max), float16 (max, 99th percentile),
# the bar `ramit infer --half` meets on photos.
TOLERANCE = 1e-4
HALF_TOLERANCE = (8 / 255, 2 / 255)
# Execution providers tried in this order for each device; the first one installed runs the model.
PROVIDERS = {'cuda': ('TensorrtExecutionProvider', 'CUDAExecutionProvider'),
             'cpu': ('OpenVINOExecutionProvider', 'CPUExecutionProvider')}


class ExportMismatchError(RunError):
    """An exported model whose outputs differ from PyTorch's: it is not written."""


def check_photos(paths: Optional[Sequence[os.PathLike]] = None) -> List[Path]:
    """The photos an export is checked on: ``paths``, else the two bundled ones."""
    found = [Path(p) for p in paths] if paths else sorted(PHOTOS.glob('*.png'))
    missing = [p for p in found if not p.is_file()]
    if missing:
        raise OptionError(f'--check-images {missing[0]}: no such file')
    return found


def photo_batches(net: RAMiT, photos: Sequence[Path]) -> List[torch.Tensor]:
    """Each photo as a [1, C, H, W] float32 tensor in the network's channels."""
    return [torch.from_numpy(to_network_channels(read_image(p).rgb, net.in_chans)).permute(2, 0, 1)[None]
            .contiguous() for p in photos]


def allowed_difference(half: bool, tolerance: Optional[float] = None) -> Tuple[float, float]:
    """The largest (max, 99th percentile) difference from PyTorch an export may show: ``tolerance`` for both where
    given, else the float16 or float32 default."""
    if tolerance is not None:
        return tolerance, tolerance
    return HALF_TOLERANCE if half else (TOLERANCE, TOLERANCE)


def export_onnx(net: RAMiT, path: os.PathLike, opset: int = DEFAULT_OPSET, half: bool = False,
                photos: Optional[Sequence[os.PathLike]] = None, tolerance: Optional[float] = None
                ) -> Dict[str, float]:
    """Trace ``ProtocolNetwork(net)`` (TorchScript exporter) into ``path`` with dynamic batch/height/width, check it
    with onnxruntime against the PyTorch backend on ``photos`` (two at once as a batch too), and only then move it
    into place. Returns the differences (max, 99th percentile); ExportMismatchError above the tolerance."""
    dtype = torch.float16 if half else torch.float32
    model = ProtocolNetwork(copy.deepcopy(net).to(dtype)).eval()
    # Any size traces the same graph (the axes are dynamic); a small one keeps tracing quick.
    x = torch.rand(1, net.in_chans, 20, 20, dtype=dtype)
    axes = {0: 'batch', 2: 'height', 3: 'width'}
    with atomic_output(path) as tmp:
        with warnings.catch_warnings():
            # The tracer warns about every Python int taken from a shape; the shapes stay symbolic in ONNX.
            warnings.simplefilter('ignore')
            torch.onnx.export(model, (x,), tmp, dynamo=False, opset_version=opset, input_names=['input'],
                              output_names=['output'], dynamic_axes={'input': axes, 'output': axes})
        diff = compare(net, OnnxSession(tmp, 'cpu').run, check_photos(photos))
        limits = allowed_difference(half, tolerance)
        if diff['max'] > limits[0] or diff['p99'] > limits[1]:
            raise ExportMismatchError(
                f"{os.fspath(path)}: not written: onnxruntime differs from PyTorch by up to {diff['max']:.3g} "
                f"(99th percentile {diff['p99']:.3g}; allowed {limits[0]:.3g} / {limits[1]:.3g})")
    return diff


def compare(net: RAMiT, run: Run, photos: Sequence[Path]) -> Dict[str, float]:
    """|run - PyTorch float32| over ``photos``, each alone and the first two as one batch: max and 99th percentile."""
    reference = torch_run(net)
    batches = photo_batches(net, photos)
    same_size = [b for b in batches if b.shape == batches[0].shape]
    if len(same_size) > 1:
        batches.append(torch.cat(same_size[:2]))
    diffs = []
    for batch in batches:
        want = restore_tensor(reference, batch, net.upscale).numpy()
        got = restore_tensor(run, batch, net.upscale).numpy()
        if got.shape != want.shape:
            raise ExportMismatchError(f'onnxruntime gives an output of shape {got.shape} for {tuple(batch.shape)}, '
                                      f'PyTorch {want.shape}')
        if not np.isfinite(got).all():
            raise ExportMismatchError(f'onnxruntime gives non-finite values for an input of {tuple(batch.shape)}')
        diffs.append(np.abs(got - want).ravel())
    diff = np.concatenate(diffs)
    return dict(max=float(diff.max()), p99=float(np.percentile(diff, 99)))


class OnnxSession:
    """An onnxruntime session of an exported model on the best installed execution provider for ``device``; called
    like a backend's pass (protocol included: it is in the graph)."""

    def __init__(self, path: os.PathLike, device: str, threads: Optional[int] = None) -> None:
        import onnxruntime as ort  # an optional dependency: imported where a session is made

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        installed = ort.get_available_providers()
        self.providers = [p for p in PROVIDERS[device] if p in installed] or ['CPUExecutionProvider']
        self.session = ort.InferenceSession(os.fspath(path), options, providers=self.providers)
        self.half = self.session.get_inputs()[0].type == 'tensor(float16)'

    def run(self, batch: torch.Tensor) -> torch.Tensor:
        """The model's output for [B, C, H, W] ``batch`` (float32 in, float32 out)."""
        x = batch.detach().cpu().numpy().astype(np.float16 if self.half else np.float32)
        return torch.from_numpy(self.session.run(None, {'input': x})[0].astype(np.float32))


def cache_key(net: RAMiT, half: bool, opset: int) -> str:
    """What a cached export depends on: the weights and arguments, the precision, opset, torch and onnxruntime."""
    import onnxruntime as ort

    digest = hashlib.sha256()
    for key, tensor in sorted(net.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    digest.update(repr((sorted(net.arguments().items()), half, opset, torch.__version__, ort.__version__)).encode())
    return digest.hexdigest()[:24]


def cached_onnx(net: RAMiT, half: bool = False, opset: int = DEFAULT_OPSET, log=print
                ) -> Tuple[Path, Optional[Dict[str, float]]]:
    """The exported model of ``net`` in the cache (``<cache>/onnx``), exported and checked on first use; the
    differences that check found if it was made now, else None. Dynamic height and width make one model serve every
    image size."""
    folder = cache_dir() / 'onnx'
    path = folder / f'{net.variant}_{cache_key(net, half, opset)}{"_fp16" if half else ""}.onnx'
    if path.is_file():
        return path, None
    make_folder(folder)
    log(f'exporting the network to ONNX for onnxruntime (once; cached in {folder})')
    return path, export_onnx(net, path, opset, half)


def onnx_backend(net: RAMiT, device: str, half: bool = False, threads: Optional[int] = None, log=print
                 ) -> Tuple[OnnxSession, Dict[str, float]]:
    """An onnxruntime session for ``net`` (cached export), checked against PyTorch on the bundled photos with the
    provider it actually runs on (a GPU or OpenVINO provider included); ExportMismatchError if it differs."""
    path, export_check = cached_onnx(net, half, log=log)
    session = OnnxSession(path, device, threads)
    # A model exported now was just checked on these photos with the CPU providers: only another device checks again.
    diff = export_check if export_check is not None and device == 'cpu' else compare(net, session.run, check_photos())
    limits = allowed_difference(half)
    if diff['max'] > limits[0] or diff['p99'] > limits[1]:
        raise ExportMismatchError(f"onnxruntime ({session.providers[0]}) differs from PyTorch by up to "
                                  f"{diff['max']:.3g}; use --backend torch")
    return session, diff
