"""`ramit export`: a RAMiT checkpoint as ONNX with the evaluation protocol in the graph (float32, or float16 with
--half), dynamic batch, height and width, written only after onnxruntime matched `ramit infer` on photos."""
import argparse
import importlib.util

from torch.onnx import _constants as onnx_limits

from ramit.errors import OptionError
from ramit.export import allowed_difference, check_photos, export_onnx
from ramit.hub import resolve_weights
from ramit.inference import load_network


def run(args: argparse.Namespace, prog: str) -> int:
    """Export, check against the PyTorch backend on photos, and print the difference."""
    missing = [name for name in ('onnx', 'onnxruntime') if importlib.util.find_spec(name) is None]
    if missing:
        raise OptionError(f"needs {' and '.join(missing)} (dependencies of ramit-plugin that are missing here): "
                          f"pip install {' '.join(missing)}")
    newest = onnx_limits.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET  # torch's exporter raises a traceback beyond it
    if not 14 <= args.opset <= newest:
        raise OptionError(f'--opset {args.opset}: this torch exports opsets 14 to {newest}')
    weights, published = resolve_weights(args.weights)
    net = load_network(weights, args.variant, args.task, args.scale, published)
    photos = check_photos(args.check_images)
    print(f'{net.describe()} -> {args.onnx}: tracing ({"float16" if args.half else "float32"}, opset {args.opset}), '
          f'then checking on {len(photos)} photo(s)', flush=True)
    diff = export_onnx(net, args.onnx, args.opset, args.half, photos, args.tolerance)
    limits = allowed_difference(args.half, args.tolerance)
    names = ', '.join(p.name for p in photos)
    print(f"{args.onnx}: written; onnxruntime vs ramit infer (PyTorch, float32) on {names}: "
          f"max |diff| {diff['max']:.3g}, 99th percentile {diff['p99']:.3g} (allowed {limits[0]:.3g} / "
          f'{limits[1]:.3g}); the graph pads (mirror) to {net.pad_unit} and crops back, any batch, height and width')
    return 0
