"""`ramit export`: ONNX with dynamic batch/height/width equals PyTorch (1e-4), sizes not multiples of 32."""
import numpy as np
import onnxruntime as ort
import torch

from ramit_cli.main import main as ramit
from ramit_plugin.inference import build_network


def main(argv):
    """`ramit export ARGV` in this process; returns the exit status."""
    return ramit(['export', *argv], prog='ramit')


def test_export_and_verify(reference_dir, tmp_path, capsys):
    weights = reference_dir / 'weights' / 'RAMiT-slimLLE_LLE.pth'  # the smallest published model
    out = tmp_path / 'slim.onnx'
    assert main(['--weights', str(weights), '--onnx', str(out)]) == 0
    text = capsys.readouterr().out
    assert 'RAMiT-slimLLE low-light enhancement (3 channels) -> ' in text and '; ok, tolerance 0.0001)' in text
    reported = float(text.split('max |diff| = ')[1].split()[0])
    assert reported <= 1e-4
    # Independently: one more size, checked here against the reference path.
    session = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    x = torch.rand(1, 3, 27, 38, generator=torch.Generator().manual_seed(5))
    net = build_network(weights, task='lle').set_fast(False)
    with torch.no_grad():
        ref = net(x).numpy()
    got = session.run(None, {'input': x.numpy()})[0]
    assert got.shape == (1, 3, 27, 38)
    assert np.abs(got - ref).max() < 1e-4
    assert [p.name for p in tmp_path.iterdir()] == ['slim.onnx']


def test_export_errors(reference_dir, tmp_path, capsys):
    weights = reference_dir / 'weights' / 'RAMiT-slimSR_X2.pth'
    assert main(['--weights', str(weights), '--onnx', str(tmp_path / 'no' / 'x.onnx')]) == 2
    assert 'does not exist' in capsys.readouterr().err
    assert main(['--weights', str(weights), '--scale', '4', '--onnx', str(tmp_path / 'x.onnx')]) == 2
    assert '--scale 4 contradicts the checkpoint, which is x2' in capsys.readouterr().err


def test_missing_onnxruntime_is_a_one_line_hint(reference_dir, tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name == 'onnxruntime' else real(name, *a))
    weights = reference_dir / 'weights' / 'RAMiT-slimLLE_LLE.pth'
    assert main(['--weights', str(weights), '--onnx', str(tmp_path / 'x.onnx')]) == 2
    assert capsys.readouterr().err.strip() == ("ramit export: error: needs onnxruntime: "
                                               "pip install 'ramit-plugin[export]'")
    assert not any(tmp_path.iterdir())


def test_custom_checkpoint_exports(tmp_path, capsys):
    from ramit_plugin import RAMiT
    torch.manual_seed(0)
    net = RAMiT('RAMiT', 'lle', dim=16, depths=(1, 1, 1, 1), window_size=4, fuse_expand_groups=1)
    torch.save(net.state_dict(), tmp_path / 'custom.pth')
    assert main(['--weights', str(tmp_path / 'custom.pth'), '--task', 'lle', '--onnx', str(tmp_path / 'c.onnx')]) == 0
    text = capsys.readouterr().out
    assert text.startswith('RAMiT low-light enhancement (3 channels) with dim=16, depths=(1, 1, 1, 1), window_size=4, '
                           'fuse_expand_groups=1 -> ') and '; ok, tolerance 0.0001)' in text


def test_float16_export_runs_in_onnxruntime_close_to_float32(reference_dir, tmp_path, capsys):
    weights = reference_dir / 'weights' / 'RAMiT-slimLLE_LLE.pth'
    out = tmp_path / 'slim16.onnx'
    assert main(['--weights', str(weights), '--onnx', str(out), '--half']) == 0
    text = capsys.readouterr().out
    assert '(float16, opset 17' in text and 'ok, tolerance 0.0314 max, 0.00784 at the 99th percentile' in text
    session = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    assert session.get_inputs()[0].type == session.get_outputs()[0].type == 'tensor(float16)'
    x = torch.rand(1, 3, 40, 52, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = build_network(weights, task='lle')(x).numpy()
    got = session.run(None, {'input': x.numpy().astype(np.float16)})[0].astype(np.float32)
    assert np.isfinite(got).all() and np.percentile(np.abs(got - ref), 99) < 2 / 255


def test_output_path_problems_and_a_full_disk_are_one_line(tmp_path, capsys, monkeypatch):
    import errno

    from ramit_plugin import RAMiT
    torch.manual_seed(0)
    net = RAMiT('RAMiT', 'lle', dim=16, depths=(1, 1, 1, 1), window_size=4, fuse_expand_groups=1)
    torch.save(net.state_dict(), tmp_path / 'custom.pth')
    weights = ['--weights', str(tmp_path / 'custom.pth'), '--task', 'lle']
    (tmp_path / 'file').write_text('mine')
    for onnx, message in ((tmp_path, f'--onnx {tmp_path}: is a folder; give the file to write, e.g. '
                                     f"{tmp_path / 'model.onnx'}"),
                          (tmp_path / 'file' / 'x.onnx', f"--onnx {tmp_path / 'file' / 'x.onnx'}: folder "
                                                         f"{tmp_path / 'file'} is a file, not a folder")):
        assert main([*weights, '--onnx', str(onnx)]) == 2
        assert capsys.readouterr().err == f'ramit export: error: {message}\n'

    def disk_full(net, args, path, **kwargs):
        open(path, 'wb').write(b'half a model')
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(torch.onnx, 'export', disk_full)
    assert main([*weights, '--onnx', str(tmp_path / 'x.onnx')]) == 1
    assert capsys.readouterr().err == (f"ramit export: error: {tmp_path / 'x.onnx'}: cannot be written (No space left "
                                       'on device); nothing was left half-written\n')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['custom.pth', 'file']
