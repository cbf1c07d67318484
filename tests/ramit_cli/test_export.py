"""`ramit export`: ONNX with the evaluation protocol in the graph, dynamic batch/height/width, equal to `ramit infer`
(PyTorch) within 1e-4 on sizes that are not multiples of 32; written only when the check on photos passes."""
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch

from ramit.images import read_image, to_network_channels
from ramit.inference import load_network, restore_tensor, torch_run
from tests.ramit_cli.conftest import tiny_checkpoint


@pytest.fixture
def export(ramit) -> Callable[..., int]:
    """`ramit export ARGV` in this process; returns the exit status."""
    return lambda *argv: ramit('export', *map(str, argv))


@pytest.fixture
def slim_lle(reference_dir) -> Path:
    """The smallest published model (RAMiT-slimLLE, low-light enhancement)."""
    return reference_dir / 'weights' / 'RAMiT-slimLLE_LLE.pth'


@pytest.fixture
def tiny_lle(tmp_path) -> Path:
    """A tiny custom low-light checkpoint, quick to export."""
    return tiny_checkpoint(tmp_path / 'custom.pth', 'lle')


def onnx_output(model: Path, image: Path) -> np.ndarray:
    """The exported model's output for an image file read as `ramit infer` reads it (a gray one into a colour
    model: replicated): float32 [H, W, C]."""
    session = ort.InferenceSession(str(model), providers=['CPUExecutionProvider'])
    x = to_network_channels(read_image(image).rgb, session.get_inputs()[0].shape[1]).transpose(2, 0, 1)[None]
    dtype = np.float16 if session.get_inputs()[0].type == 'tensor(float16)' else np.float32
    return session.run(None, {'input': x.astype(dtype)})[0][0].transpose(1, 2, 0).astype(np.float32)


def test_the_written_model_equals_ramit_infer_on_a_photo_of_no_multiple_of_32(
        slim_lle, tmp_path, capsys, export, ramit, smooth):
    out = tmp_path / 'slim.onnx'
    assert export('--weights', slim_lle, '--onnx', out) == 0
    text = capsys.readouterr().out
    assert text.startswith(f'RAMiT-slimLLE low-light enhancement (3 channels) -> {out}: tracing (float32, opset 17), '
                           'then checking on 2 photo(s)\n')
    assert f'{out}: written; onnxruntime vs ramit infer (PyTorch, float32) on astronaut_61x45.png, coffee_70x33.png: ' \
           'max |diff| ' in text and '(allowed 0.0001 / 0.0001)' in text
    assert float(text.split('max |diff| ')[1].split(',')[0]) <= 1e-4
    assert [p.name for p in tmp_path.iterdir()] == ['slim.onnx']
    # Independently: a 16-bit 27x38 photo through `ramit infer --backend torch` and through the written model.
    photo = tmp_path / 'in' / 'odd.png'
    photo.parent.mkdir()
    cv2.imwrite(str(photo), smooth(27, 38, 3, 5, np.uint16))
    assert ramit('infer', '-i', str(photo), '-o', str(tmp_path / 'o'), '--weights', str(slim_lle), '--backend',
                 'torch') == 0
    written = cv2.imread(str(tmp_path / 'o' / 'odd_RAMiT_lle.png'), cv2.IMREAD_UNCHANGED)[:, :, ::-1] / 65535
    got = onnx_output(out, photo)
    assert got.shape == written.shape == (27, 38, 3)
    assert np.abs(np.clip(got, 0, 1) - written).max() <= 1e-4 + 0.5 / 65535


def test_export_errors(reference_dir, tmp_path, capsys, export):
    weights = reference_dir / 'weights' / 'RAMiT-slimSR_X2.pth'
    assert export('--weights', weights, '--onnx', tmp_path / 'no' / 'x.onnx') == 2
    assert capsys.readouterr().err == (f"ramit export: error: --onnx {tmp_path / 'no' / 'x.onnx'}: folder "
                                       f"{tmp_path / 'no'} does not exist\n")
    assert export('--weights', weights, '--scale', '4', '--onnx', tmp_path / 'x.onnx') == 2
    assert '--scale 4 contradicts the checkpoint, which is x2' in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize('flags,message', [
    (['--opset', '999'], '--opset 999: this torch exports opsets 14 to '),
    (['--tolerance', '-1'], '--tolerance -1.0: must be a positive number (the largest allowed difference)'),
    (['--tolerance', '0'], '--tolerance 0.0: must be a positive number (the largest allowed difference)'),
])
def test_an_opset_or_tolerance_out_of_range_is_one_line_and_nothing_is_written(tiny_lle, tmp_path, capsys, export,
                                                                               flags, message):
    assert export('--weights', tiny_lle, '--task', 'lle', '--onnx', tmp_path / 'x.onnx', *flags) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f'ramit export: error: {message}') and len(captured.err.splitlines()) == 1
    assert captured.out == ''
    assert sorted(p.name for p in tmp_path.iterdir()) == ['custom.pth']


def test_missing_onnxruntime_is_a_one_line_hint(slim_lle, tmp_path, capsys, monkeypatch, export):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name == 'onnxruntime' else real(name, *a))
    assert export('--weights', slim_lle, '--onnx', tmp_path / 'x.onnx') == 2
    assert capsys.readouterr().err.strip() == ("ramit export: error: needs onnxruntime (dependencies of ramit-plugin "
                                               "that are missing here): pip install onnxruntime")
    assert not any(tmp_path.iterdir())


def test_custom_checkpoint_checked_on_your_own_photos(tiny_lle, tmp_path, capsys, export, image_file):
    """--check-images: the export is checked on these (any size, gray too) instead of the bundled photos; a
    tolerance they do not meet leaves no file."""
    mine = [image_file(tmp_path / 'mine.png', 29, 35, 3, 1), image_file(tmp_path / 'gray.png', 21, 18, 1, 2)]
    model = tmp_path / 'c.onnx'
    assert export('--weights', tiny_lle, '--task', 'lle', '--onnx', model, '--check-images', *mine) == 0
    text = capsys.readouterr().out
    assert text.startswith('RAMiT low-light enhancement (3 channels) with dim=16, depths=(1, 1, 1, 1), window_size=4, '
                           f'fuse_expand_groups=1 -> {model}: tracing (float32, opset 17), then checking on 2 '
                           'photo(s)\n')
    assert (f'{model}: written; onnxruntime vs ramit infer (PyTorch, float32) on mine.png, gray.png: max |diff| '
            in text)
    # The written model on the gray photo (replicated into three channels, as `ramit infer` feeds it).
    net = load_network(tiny_lle, task='lle')
    x = torch.from_numpy(np.repeat(read_image(mine[1]).rgb, 3, axis=2)).permute(2, 0, 1)[None]
    want = restore_tensor(torch_run(net), x, 1)[0].permute(1, 2, 0).numpy()
    assert np.abs(onnx_output(model, mine[1]) - want).max() <= 1e-4
    # A tolerance the photos do not meet: refused, nothing written.
    assert export('--weights', tiny_lle, '--task', 'lle', '--onnx', tmp_path / 'strict.onnx', '--tolerance',
                  '1e-30', '--check-images', *mine) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"ramit export: error: {tmp_path / 'strict.onnx'}: not written: onnxruntime differs from "
                          'PyTorch by up to ')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['c.onnx', 'custom.pth', 'gray.png', 'mine.png']


def test_float16_export_runs_in_onnxruntime_close_to_float32(slim_lle, tmp_path, capsys, export):
    out = tmp_path / 'slim16.onnx'
    assert export('--weights', slim_lle, '--onnx', out, '--half') == 0
    text = capsys.readouterr().out
    assert '(float16, opset 17)' in text and '(allowed 0.0314 / 0.00784)' in text
    session = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    assert session.get_inputs()[0].type == session.get_outputs()[0].type == 'tensor(float16)'
    x = torch.rand(1, 3, 40, 52, generator=torch.Generator().manual_seed(2))
    ref = restore_tensor(torch_run(load_network(slim_lle, task='lle')), x, 1).numpy()
    got = session.run(None, {'input': x.numpy().astype(np.float16)})[0].astype(np.float32)
    assert got.shape == ref.shape and np.isfinite(got).all()
    assert np.percentile(np.abs(got - ref), 99) < 2 / 255


def test_output_path_problems_and_a_full_disk_are_one_line(tiny_lle, tmp_path, capsys, monkeypatch, export):
    import errno

    weights = ['--weights', tiny_lle, '--task', 'lle']
    (tmp_path / 'file').write_text('mine')
    for onnx, message in ((tmp_path, f'--onnx {tmp_path}: is a folder; give the file to write, e.g. '
                                     f"{tmp_path / 'model.onnx'}"),
                          (tmp_path / 'file' / 'x.onnx', f"--onnx {tmp_path / 'file' / 'x.onnx'}: folder "
                                                         f"{tmp_path / 'file'} is a file, not a folder")):
        assert export(*weights, '--onnx', onnx) == 2
        assert capsys.readouterr().err == f'ramit export: error: {message}\n'

    def disk_full(net, args, path, **kwargs):
        open(path, 'wb').write(b'half a model')
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(torch.onnx, 'export', disk_full)
    assert export(*weights, '--onnx', tmp_path / 'x.onnx') == 1
    assert capsys.readouterr().err == (f"ramit export: error: {tmp_path / 'x.onnx'}: cannot be written (No space left "
                                       'on device); nothing was left half-written\n')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['custom.pth', 'file']
