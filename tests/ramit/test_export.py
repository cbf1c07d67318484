"""ONNX with the evaluation protocol in the graph: the published checkpoints exported once each and compared with
the PyTorch backend (restore_tensor(torch_run(net), ...)) on real photos of sizes that are not multiples of the
padding unit, in batches, tiny and tiled; float16; refused exports; the onnxruntime backend's cache; and the
Set5 PSNR-Y of the exported model against PyTorch's."""
from pathlib import Path
from typing import Callable, Dict, NamedTuple

import numpy as np
import pytest
import torch

from ramit.export import (DEFAULT_OPSET, HALF_TOLERANCE, TOLERANCE, ExportMismatchError, OnnxSession, cache_key,
                          cached_onnx, export_onnx, onnx_backend)
from ramit.inference import restore_tensor, torch_run
from ramit.network import RAMiT
from tests.ramit.conftest import photo_tensor, published, tiny_network

pytest.importorskip('onnx', reason='the ONNX export needs onnx (a dependency of ramit-plugin: pip install onnx)')

# The published checkpoints exported in float32 (each once, for every test of this file).
EXPORTED = ['RAMiT-1_X2', 'RAMiT-1_X3', 'RAMiT-1_X4', 'RAMiT-1_CDN', 'RAMiT-slimLLE_LLE']
# Low-light models see dark photos: the crops are dimmed to a fifth of their brightness for them.
DARKEN = {'lle': 0.2}


class Exported(NamedTuple):
    """A network, its ONNX file and an onnxruntime session of it."""

    net: RAMiT
    path: Path
    session: OnnxSession


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| (shapes must agree)."""
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


@pytest.fixture(scope='module')
def crops(datasets_dir: Path) -> Dict[str, torch.Tensor]:
    """Real photo crops, RGB [1, 3, H, W] in [0, 1], none a multiple of 32 on either side: 45x61 and two of 50x70
    (a batch of one size)."""
    kodak = datasets_dir / 'Kodak24'
    return {'45x61': photo_tensor(kodak / 'kodim05.png', box=(101, 203, 45, 61)),
            '50x70': photo_tensor(kodak / 'kodim23.png', box=(180, 250, 50, 70)),
            '50x70 b': photo_tensor(kodak / 'kodim05.png', box=(300, 400, 50, 70))}


@pytest.fixture(scope='module')
def check_photo(tmp_path_factory, crops: Dict[str, torch.Tensor]) -> Path:
    """A small PNG crop for export_onnx's own check (the comparisons here are made by the tests themselves)."""
    import cv2

    path = tmp_path_factory.mktemp('check') / 'check.png'
    rgb = (crops['45x61'][0, :, :20, :28].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    cv2.imwrite(str(path), rgb[:, :, ::-1])
    return path


@pytest.fixture(scope='module')
def exported(reference_dir: Path, onnx_cache_dir: Path) -> Callable[[str], Exported]:
    """Factory: the published checkpoint ``name`` exported in float32 through the onnxruntime backend's cache (as
    `ramit infer --backend onnxruntime` makes it: once per run, checked on the bundled photos) and a session of it."""
    done: Dict[str, Exported] = {}

    def get(name: str) -> Exported:
        """The export of ``name``, made on first use."""
        if name not in done:
            net = published(reference_dir, name)
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv('RAMIT_CACHE', str(onnx_cache_dir))
                path, _ = cached_onnx(net, log=lambda line: None)
            done[name] = Exported(net, path, OnnxSession(path, 'cpu'))
        return done[name]

    return get


def photo_for(net: RAMiT, photo: torch.Tensor) -> torch.Tensor:
    """``photo`` as the network's task sees it (dimmed for low-light enhancement)."""
    return photo * DARKEN.get(net.task, 1.0)


@pytest.mark.parametrize('name', EXPORTED)
def test_float32_export_restores_photos_as_the_pytorch_backend(exported, crops, name):
    net, _, session = exported(name)
    reference = torch_run(net)
    for size in ('45x61', '50x70'):
        x = photo_for(net, crops[size])
        want = restore_tensor(reference, x, net.upscale)
        got = restore_tensor(session.run, x, net.upscale)
        assert got.shape == (1, 3, x.shape[2] * net.upscale, x.shape[3] * net.upscale)
        assert max_diff(got, want) <= TOLERANCE, f'{name} on a {size} photo'


def test_dynamic_batch_and_an_input_smaller_than_the_padding_unit(exported, crops):
    net, _, session = exported('RAMiT-1_X3')
    reference = torch_run(net)
    batch = torch.cat([crops['50x70'], crops['50x70 b']])
    got = session.run(batch)
    assert got.shape == (2, 3, 150, 210)
    for i in range(2):  # each photo of the batch as the PyTorch backend restores it alone
        assert max_diff(got[i:i + 1], restore_tensor(reference, batch[i:i + 1], 3)) <= TOLERANCE
    tiny = crops['45x61'][..., 10:17, 20:25]  # 7x5: the mirror padding to 32 repeats the image several times
    got = session.run(tiny)
    assert got.shape == (1, 3, 21, 15)
    assert max_diff(got, restore_tensor(reference, tiny, 3)) <= TOLERANCE


def test_tiled_onnxruntime_equals_tiled_pytorch(exported, crops):
    net, _, session = exported('RAMiT-1_X2')
    x = crops['50x70']
    tiled = dict(tile=32, overlap=8)
    got = restore_tensor(session.run, x, 2, **tiled, tile_batch=2)
    want = restore_tensor(torch_run(net), x, 2, **tiled)
    assert max_diff(got, want) <= TOLERANCE
    assert max_diff(got, restore_tensor(torch_run(net), x, 2)) > 10 * TOLERANCE  # tiles really were used


def test_float16_export_is_within_the_half_tolerance(reference_dir, crops, check_photo, tmp_path):
    net = published(reference_dir, 'RAMiT-slimLLE_LLE')
    path = tmp_path / 'lle_fp16.onnx'
    diff = export_onnx(net, path, half=True, photos=[check_photo])
    assert 0 < diff['max'] <= HALF_TOLERANCE[0] and diff['p99'] <= HALF_TOLERANCE[1]
    session = OnnxSession(path, 'cpu')
    assert session.half
    x = photo_for(net, crops['45x61'])
    err = (session.run(x) - restore_tensor(torch_run(net), x, 1)).abs()
    assert err.max().item() <= HALF_TOLERANCE[0] and torch.quantile(err.flatten(), 0.99).item() <= HALF_TOLERANCE[1]


def test_an_export_that_differs_is_refused_and_not_written(tmp_path):
    net = tiny_network()
    path = tmp_path / 'tiny_fp16.onnx'
    with pytest.raises(ExportMismatchError) as err:
        export_onnx(net, path, half=True, tolerance=1e-12)
    assert str(err.value).startswith(f'{path}: not written: onnxruntime differs from PyTorch by up to ')
    assert str(err.value).endswith('allowed 1e-12 / 1e-12)') and err.value.exit_code == 1
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary


def test_the_onnxruntime_backend_exports_once_and_reuses_its_cache(tmp_path, monkeypatch):
    monkeypatch.setenv('RAMIT_CACHE', str(tmp_path / 'cache'))
    net = tiny_network()
    logged = []
    session, diff = onnx_backend(net, 'cpu', log=logged.append)
    assert diff['max'] <= TOLERANCE and len(logged) == 1
    assert logged[0] == f"exporting the network to ONNX for onnxruntime (once; cached in {tmp_path / 'cache' / 'onnx'})"
    path, made = cached_onnx(net)
    assert not made and [p.name for p in (tmp_path / 'cache' / 'onnx').iterdir()] == [path.name]
    again, _ = onnx_backend(net, 'cpu', log=logged.append)
    assert len(logged) == 1  # no second export
    x = torch.rand(1, 3, 21, 19, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.run(x), session.run(x))
    # What the cached model depends on: other weights or another precision are another file.
    assert cache_key(tiny_network(seed=1), False, DEFAULT_OPSET) != cache_key(net, False, DEFAULT_OPSET)
    assert cache_key(net, True, DEFAULT_OPSET) != cache_key(net, False, DEFAULT_OPSET) == path.stem.split('_')[-1]


def psnr_y(img: np.ndarray, ref: np.ndarray, border: int) -> float:
    """PSNR (dB) on the BT.601 luma of uint8 RGB [H, W, 3] images, ``border`` pixels cropped (the SR convention)."""
    def luma(x: np.ndarray) -> np.ndarray:
        """Y of ITU-R BT.601 in [16, 235]."""
        return x.astype(np.float64) / 255 @ np.array([65.481, 128.553, 24.966]) + 16.0

    diff = (luma(img) - luma(ref))[border:-border, border:-border]
    return 10 * np.log10(255.0 ** 2 / np.mean(diff ** 2))


def as_uint8(out: torch.Tensor) -> np.ndarray:
    """A [1, 3, H, W] output as the uint8 RGB image `ramit infer` writes."""
    return (out[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def test_set5_bird_psnr_y_of_the_onnx_model_equals_pytorchs(exported, datasets_dir):
    net, _, session = exported('RAMiT-slimSR_X2')
    lr = photo_tensor(datasets_dir / 'Set5' / 'LR_bicubic' / 'X2' / 'birdx2.png')
    hr = as_uint8(photo_tensor(datasets_dir / 'Set5' / 'HR' / 'bird.png'))
    onnx = psnr_y(as_uint8(restore_tensor(session.run, lr, 2)), hr, 2)
    torch_ = psnr_y(as_uint8(restore_tensor(torch_run(net), lr, 2)), hr, 2)
    assert abs(onnx - torch_) <= 0.01, f'PSNR-Y onnxruntime {onnx:.4f} dB, PyTorch {torch_:.4f} dB'
    assert torch_ > 35, f'PSNR-Y PyTorch {torch_:.4f} dB: far below what RAMiT-slimSR x2 reaches on bird'
