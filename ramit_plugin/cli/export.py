"""`ramit export`: a RAMiT checkpoint as ONNX (float32, or float16 with --half) with dynamic batch, height and
width, checked with onnxruntime against the float32 network."""
import argparse
import copy
import importlib.util
import os
import warnings
from pathlib import Path
from typing import Dict, Sequence, Tuple

import numpy as np
import torch

from ..checkpoint import describe, network_config
from ..errors import OptionError, RunError
from ..fileio import atomic_output
from ..hub import resolve_weights
from ..inference import build_network

# Sizes for the check: not multiples of 32, so the network's internal padding is exercised.
CHECK_SIZES = ((1, 45, 61), (2, 33, 70))
# float16 model against the float32 network (max, 99th percentile), in output units (1 = full range): the bar
# `ramit infer --half` meets on photos, 2/255 at the 99th percentile.
HALF_TOLERANCE = (8 / 255, 2 / 255)


def export_onnx(net: torch.nn.Module, path: Path, opset: int, sample_hw: Tuple[int, int] = (64, 64)) -> None:
    """Trace ``net`` (TorchScript exporter, in its dtype) into ``path`` with dynamic batch/height/width, atomically."""
    x = torch.rand(1, net.in_chans, *sample_hw, dtype=next(net.parameters()).dtype)
    axes = {0: 'batch', 2: 'height', 3: 'width'}
    with atomic_output(path) as tmp, warnings.catch_warnings():
        # The tracer warns about every Python int taken from a shape; the shapes stay symbolic in ONNX.
        warnings.simplefilter('ignore')
        torch.onnx.export(net, (x,), tmp, dynamo=False, opset_version=opset, input_names=['input'],
                          output_names=['output'], dynamic_axes={'input': axes, 'output': axes})


def verify_onnx(net: torch.nn.Module, path: Path, sizes: Sequence[Tuple[int, int, int]] = CHECK_SIZES
                ) -> Dict[str, float]:
    """|onnxruntime - torch float32| over random inputs of ``sizes`` (batch, height, width): max and 99th percentile.

    The ONNX model gets its own input dtype (float16 for --half); ``net`` is the float32 network.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(os.fspath(path), providers=['CPUExecutionProvider'])
    input_type = np.float16 if session.get_inputs()[0].type == 'tensor(float16)' else np.float32
    gen = torch.Generator().manual_seed(0)
    diffs = []
    for b, h, w in sizes:
        x = torch.rand(b, net.in_chans, h, w, generator=gen)
        with torch.no_grad():
            ref = net(x).numpy()
        got = session.run(None, {'input': x.numpy().astype(input_type)})[0].astype(np.float32)
        if got.shape != ref.shape:
            raise RunError(f'{path}: ONNX output shape {got.shape} for input {tuple(x.shape)}, torch gives '
                           f'{ref.shape}')
        if not np.isfinite(got).all():
            raise RunError(f'{path}: the ONNX model gives non-finite values for input {tuple(x.shape)}')
        diffs.append(np.abs(got - ref).ravel())
    diff = np.concatenate(diffs)
    return dict(max=float(diff.max()), p99=float(np.percentile(diff, 99)))


def run(args: argparse.Namespace, prog: str) -> int:
    """Export to ONNX, run the onnxruntime check and print the difference; 1 if above the tolerance."""
    needed = ('onnx',) if args.no_check else ('onnx', 'onnxruntime')
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise OptionError(f"needs {' and '.join(missing)}: pip install 'ramit-plugin[export]'")
    if args.onnx.is_dir():
        raise OptionError(f'--onnx {args.onnx}: is a folder; give the file to write, e.g. {args.onnx / "model.onnx"}')
    if not args.onnx.parent.is_dir():
        problem = 'is a file, not a folder' if args.onnx.parent.exists() else 'does not exist'
        raise OptionError(f'--onnx {args.onnx}: folder {args.onnx.parent} {problem}')
    weights, published = resolve_weights(args.weights)
    net = build_network(weights, args.variant, args.task, args.scale, published)
    export_onnx(copy.deepcopy(net).half() if args.half else net, args.onnx, args.opset)
    dtype = 'float16' if args.half else 'float32'
    print(f'{describe(network_config(net))} -> {args.onnx} ({dtype}, opset {args.opset}, dynamic batch/height/width, '
          'fast path)')
    if args.no_check:
        return 0
    diff = verify_onnx(net, args.onnx)
    sizes = ', '.join(f'{b}x{h}x{w}' for b, h, w in CHECK_SIZES)
    if args.half:
        max_tol, p99_tol = (args.tolerance, args.tolerance) if args.tolerance is not None else HALF_TOLERANCE
    else:
        max_tol = p99_tol = 1e-4 if args.tolerance is None else args.tolerance
    ok = diff['max'] <= max_tol and diff['p99'] <= p99_tol
    tolerance = f'{max_tol:g}' if max_tol == p99_tol else f'{max_tol:.3g} max, {p99_tol:.3g} at the 99th percentile'
    print(f"onnxruntime ({dtype}) vs torch float32 on inputs {sizes}: max |diff| = {diff['max']:.3g} (99th "
          f"percentile {diff['p99']:.3g}; {'ok' if ok else 'FAILED'}, tolerance {tolerance})")
    return 0 if ok else 1
