"""`ramit export`: a RAMiT checkpoint as ONNX with dynamic batch, height and width, checked with onnxruntime."""
import argparse
import importlib.util
import os
import warnings
from pathlib import Path
from typing import Sequence, Tuple

import numpy as np
import torch

from ..checkpoint import describe, network_config
from ..errors import OptionError, RunError
from ..fileio import atomic_output
from ..hub import resolve_weights
from ..inference import build_network

# Sizes for the check: not multiples of 32, so the network's internal padding is exercised.
CHECK_SIZES = ((1, 45, 61), (2, 33, 70))


def export_onnx(net: torch.nn.Module, path: Path, opset: int, sample_hw: Tuple[int, int] = (64, 64)) -> None:
    """Trace ``net`` (TorchScript exporter) into ``path`` with dynamic batch/height/width, written atomically."""
    x = torch.rand(1, net.in_chans, *sample_hw)
    axes = {0: 'batch', 2: 'height', 3: 'width'}
    with atomic_output(path) as tmp, warnings.catch_warnings():
        # The tracer warns about every Python int taken from a shape; the shapes stay symbolic in ONNX.
        warnings.simplefilter('ignore')
        torch.onnx.export(net, (x,), tmp, dynamo=False, opset_version=opset, input_names=['input'],
                          output_names=['output'], dynamic_axes={'input': axes, 'output': axes})


def verify_onnx(net: torch.nn.Module, path: Path, sizes: Sequence[Tuple[int, int, int]] = CHECK_SIZES
                ) -> float:
    """Largest |onnxruntime - torch| over random inputs of ``sizes`` (batch, height, width)."""
    import onnxruntime as ort

    session = ort.InferenceSession(os.fspath(path), providers=['CPUExecutionProvider'])
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for b, h, w in sizes:
        x = torch.rand(b, net.in_chans, h, w, generator=gen)
        with torch.no_grad():
            ref = net(x).numpy()
        got = session.run(None, {'input': x.numpy()})[0]
        if got.shape != ref.shape:
            raise RunError(f'{path}: ONNX output shape {got.shape} for input {tuple(x.shape)}, torch gives '
                             f'{ref.shape}')
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


def run(args: argparse.Namespace, prog: str) -> int:
    """Export to ONNX, run the onnxruntime check and print the max difference; 1 if above --tolerance."""
    needed = ('onnx',) if args.no_check else ('onnx', 'onnxruntime')
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise OptionError(f"needs {' and '.join(missing)}: pip install 'ramit-plugin[export]'")
    weights, published = resolve_weights(args.weights)
    net = build_network(weights, args.variant, args.task, args.scale, published)
    if not args.onnx.parent.is_dir():
        raise OptionError(f'--onnx {args.onnx}: folder {args.onnx.parent} does not exist')
    export_onnx(net, args.onnx, args.opset)
    print(f'{describe(network_config(net))} -> {args.onnx} (opset {args.opset}, dynamic batch/height/width, '
          'fast path)')
    if args.no_check:
        return 0
    diff = verify_onnx(net, args.onnx)
    sizes = ', '.join(f'{b}x{h}x{w}' for b, h, w in CHECK_SIZES)
    ok = diff <= args.tolerance
    print(f'onnxruntime vs torch on inputs {sizes}: max |diff| = {diff:.3g} '
          f"({'ok' if ok else 'FAILED'}, tolerance {args.tolerance:g})")
    return 0 if ok else 1
