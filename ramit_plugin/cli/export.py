"""`ramit export`: a RAMiT checkpoint as ONNX with dynamic batch, height and width, checked with onnxruntime."""
import argparse
import importlib.util
import os
import sys
import warnings
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import torch

from ..archs.ramit_arch import TASKS, VARIANTS
from ..fileio import atomic_output

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
            raise ValueError(f'{path}: ONNX output shape {got.shape} for input {tuple(x.shape)}, torch gives '
                             f'{ref.shape}')
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


def main(argv: List[str], prog: str = 'ramit export') -> int:
    """Export to ONNX, run the onnxruntime check and print the max difference; 1 if above --tolerance."""
    p = argparse.ArgumentParser(prog=prog, description='Export a RAMiT checkpoint to ONNX (dynamic batch, '
                                'height and width; any size works, the graph pads internally) and check it '
                                'against PyTorch with onnxruntime.')
    p.add_argument('--weights', required=True, help='checkpoint file or published model name')
    p.add_argument('--onnx', required=True, type=Path, help='output .onnx file')
    p.add_argument('--opset', type=int, default=17, help='ONNX opset (17)')
    p.add_argument('--variant', choices=list(VARIANTS), help='check the checkpoint is this variant')
    p.add_argument('--task', choices=list(TASKS), help='task (needed for ambiguous scale-1 checkpoints)')
    p.add_argument('--scale', type=int, choices=(1, 2, 3, 4), help='check the checkpoint has this scale')
    p.add_argument('--tolerance', type=float, default=1e-4, help='max allowed |onnx - torch| (1e-4)')
    p.add_argument('--no-check', action='store_true', help='skip the onnxruntime comparison')
    args = p.parse_args(argv)
    from ..hub import HubError, resolve_weights
    from ..inference import build_network

    needed = ('onnx',) if args.no_check else ('onnx', 'onnxruntime')
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        print(f"{prog}: error: needs {' and '.join(missing)}: pip install 'ramit-plugin[export]'", file=sys.stderr)
        return 2

    try:
        weights, published = resolve_weights(args.weights)
        net = build_network(weights, args.variant, args.task, args.scale, published)
    except (ValueError, HubError, FileNotFoundError) as err:
        print(f'{prog}: error: {err}', file=sys.stderr)
        return 2
    if not args.onnx.parent.is_dir():
        print(f'{prog}: error: --onnx {args.onnx}: folder {args.onnx.parent} does not exist', file=sys.stderr)
        return 2
    export_onnx(net, args.onnx, args.opset)
    print(f'{net.describe()} -> {args.onnx} (opset {args.opset}, dynamic batch/height/width, fast path)')
    if args.no_check:
        return 0
    diff = verify_onnx(net, args.onnx)
    sizes = ', '.join(f'{b}x{h}x{w}' for b, h, w in CHECK_SIZES)
    ok = diff <= args.tolerance
    print(f'onnxruntime vs torch on inputs {sizes}: max |diff| = {diff:.3g} '
          f"({'ok' if ok else 'FAILED'}, tolerance {args.tolerance:g})")
    return 0 if ok else 1
