"""`ramit infer` on users' images: formats, bit depths, alpha, gray, EXIF orientation, corrupt files, overwrite,
name collisions, file modes, option errors, and the two backends (PyTorch and onnxruntime, `--backend auto`)."""
import os
import shutil
import stat
from pathlib import Path
from typing import Callable, List, Optional

import cv2
import numpy as np
import pytest
import torch

from ramit import RAMiT
from ramit.images import encode_png, read_image, upscale_alpha
from ramit.inference import WRITER, load_network, restore_tensor, torch_run

pytestmark = pytest.mark.usefixtures('onnx_cache')  # the default backend exports ONNX: into the session's cache


@pytest.fixture
def infer(ramit) -> Callable[..., int]:
    """`ramit infer ARGV` in this process; returns the exit status."""
    return lambda *argv: ramit('infer', *map(str, argv))


def restored(weights: Path, image: Path, task: Optional[str] = None) -> np.ndarray:
    """What `ramit infer --backend torch` writes for an 8-bit colour ``image`` (BGR, before quantisation, x255),
    computed through the library: load_network, torch_run, restore_tensor."""
    net = load_network(weights, task=task)
    x = torch.from_numpy(read_image(image).rgb).permute(2, 0, 1)[None]
    return restore_tensor(torch_run(net), x, net.upscale)[0].clamp(0, 1).permute(1, 2, 0).numpy()[:, :, ::-1] * 255


def first_line(text: str) -> str:
    """The first line of a command's stdout (the network, device, precision and backend)."""
    return text.splitlines()[0]


def unchanged(path: Path) -> np.ndarray:
    """An image file as stored (bit depth, channels, alpha), OpenCV's BGR order."""
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_folder_mixing_formats(slim_x2, tmp_path, capsys, infer, smooth, image_file):
    src = tmp_path / 'in'
    src.mkdir()
    image_file(src / 'colour.png', 20, 28, 3, 0)
    image_file(src / 'photo.jpg', 21, 19, 3, 1)
    image_file(src / 'gray.png', 18, 22, 1, 2)
    rgba = np.concatenate([smooth(20, 24, 3, 3), smooth(20, 24, 1, 4)], axis=2)
    cv2.imwrite(str(src / 'rgba.png'), rgba)
    image_file(src / 'deep.tif', 17, 23, 3, 5, np.uint16)
    (src / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n this is not an image')
    (src / 'notes.txt').write_text('ignored: not an image suffix')
    out = tmp_path / 'out'
    assert infer('-i', src, '-o', out, '--weights', slim_x2) == 1  # the default backend (onnxruntime here)
    captured = capsys.readouterr()
    assert f'{src / "broken.png"}: cannot be read as an image (corrupt file or unsupported format); skipped' \
        in captured.err
    assert captured.out.strip().splitlines()[-1] == (f'{out}: 5 written, 0 skipped (output exists; --overwrite '
                                                     'replaces it), 1 failed, of 6 image(s); failed: broken.png')
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f'{n}_RAMiT_x2.png' for n in ('colour', 'photo', 'gray', 'rgba', 'deep'))

    def written(name: str) -> np.ndarray:
        return unchanged(out / f'{name}_RAMiT_x2.png')

    assert written('colour').shape == (40, 56, 3) and written('colour').dtype == np.uint8
    assert written('photo').shape == (42, 38, 3)
    assert written('gray').shape == (36, 44) and written('gray').dtype == np.uint8
    assert written('deep').shape == (34, 46, 3) and written('deep').dtype == np.uint16
    got = written('rgba')
    assert got.shape == (40, 48, 4)
    alpha = upscale_alpha(rgba[:, :, 3].astype(np.float32) / 255, 2)
    assert np.array_equal(got[:, :, 3], np.round(alpha * 255).astype(np.uint8))

    # The colour result is the network's protocol output, quantised (BGR on disk).
    expected = np.round(restored(slim_x2, src / 'colour.png'))
    assert np.abs(written('colour').astype(np.float64) - expected).max() <= 1
    # 16-bit output keeps its precision: not a multiple of 257 everywhere as an 8-bit round trip would be.
    assert np.any(written('deep') % 257)

    # A second run skips existing outputs unless --overwrite, and says so in its summary.
    before = (out / 'colour_RAMiT_x2.png').stat().st_mtime_ns
    assert infer('-i', src / 'colour.png', src / 'photo.jpg', '-o', out, '--weights', slim_x2) == 0
    assert (out / 'colour_RAMiT_x2.png').stat().st_mtime_ns == before
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        f'{out}: 0 written, 2 skipped (output exists; --overwrite replaces it), 0 failed, of 2 image(s)')
    assert infer('-i', src / 'colour.png', '-o', out, '--weights', slim_x2, '--overwrite') == 0
    assert (out / 'colour_RAMiT_x2.png').stat().st_mtime_ns != before
    assert not [p for p in out.iterdir() if p.name.startswith('.')]  # no temporary files left


def test_glob_batch_and_tiles(slim_x2, tmp_path, infer, image_file):
    for i in range(3):
        image_file(tmp_path / f'img{i}.png', 24, 40, 3, 10 + i)
    assert infer('-i', tmp_path / 'img*.png', '-o', tmp_path / 'a', '--weights', slim_x2, '--batch', '2') == 0
    assert infer('-i', tmp_path / 'img0.png', '-o', tmp_path / 'b', '--weights', slim_x2, '--tile', '16',
                 '--tile-overlap', '4', '--batch', '3') == 0
    batched = cv2.imread(str(tmp_path / 'a' / 'img0_RAMiT_x2.png'))
    single = cv2.imread(str(tmp_path / 'b' / 'img0_RAMiT_x2.png'))
    assert batched.shape == single.shape == (48, 80, 3)
    assert len(list((tmp_path / 'a').iterdir())) == 3


# ------------------------------------------------------------------------------------------------- backends
def test_onnxruntime_equals_torch_with_tiles_batches_and_alpha(slim_x2, tmp_path, capsys, infer, smooth):
    """16-bit inputs (two RGB of one size, so a batch of 2, and an RGBA): the 16-bit outputs of the two backends
    agree within 1e-4 of the range (plus rounding), whole and in batched tiles; alpha is the same either way."""
    src = tmp_path / 'in'
    src.mkdir()
    for i in range(2):
        cv2.imwrite(str(src / f'rgb{i}.png'), smooth(44, 60, 3, 20 + i, np.uint16))
    cv2.imwrite(str(src / 'rgba.png'), np.concatenate([smooth(38, 50, 3, 22, np.uint16),
                                                       smooth(38, 50, 1, 23, np.uint16)], axis=2))
    runs = {'whole': ['--batch', '2'], 'tiled': ['--batch', '2', '--tile', '32', '--tile-overlap', '8']}
    bound = np.ceil(1e-4 * 65535)  # |float difference| <= 1e-4, then each side rounded to the nearest level
    for name, flags in runs.items():
        outputs = {}
        for backend in ('torch', 'onnxruntime'):
            out = tmp_path / f'{name}_{backend}'
            assert infer('-i', src, '-o', out, '--weights', slim_x2, '--backend', backend, *flags) == 0
            assert first_line(capsys.readouterr().out).endswith(f'(fp32, {backend})')
            outputs[backend] = {p.name: unchanged(p) for p in sorted(out.iterdir())}
        assert sorted(outputs['torch']) == sorted(outputs['onnxruntime']) == [
            'rgb0_RAMiT_x2.png', 'rgb1_RAMiT_x2.png', 'rgba_RAMiT_x2.png']
        for file, want in outputs['torch'].items():
            got = outputs['onnxruntime'][file]
            assert got.dtype == want.dtype == np.uint16 and got.shape == want.shape, file
            assert np.abs(got.astype(np.int32) - want.astype(np.int32)).max() <= bound, (name, file)
        assert outputs['torch']['rgba_RAMiT_x2.png'].shape == (76, 100, 4)
        assert np.array_equal(outputs['torch']['rgba_RAMiT_x2.png'][:, :, 3],
                              outputs['onnxruntime']['rgba_RAMiT_x2.png'][:, :, 3])
        runs[name] = outputs['torch']
    # The tiled run really was tiled: CH-SA sees each tile, not the image, so it differs a little from the whole.
    assert not np.array_equal(runs['whole']['rgb0_RAMiT_x2.png'], runs['tiled']['rgb0_RAMiT_x2.png'])


def test_auto_backend_is_onnxruntime_for_float32_on_the_cpu_and_torch_otherwise(
        slim_x2, tiny_weights, tmp_path, capsys, infer, image_file):
    image_file(tmp_path / 'x.png', 20, 24)
    weights = ['--weights', slim_x2, '--device', 'cpu']
    assert infer('-i', tmp_path / 'x.png', '-o', tmp_path / 'auto', *weights) == 0
    assert first_line(capsys.readouterr().out).endswith(' on cpu (fp32, onnxruntime)')
    assert infer('-i', tmp_path / 'x.png', '-o', tmp_path / 'onnx', *weights, '--backend', 'onnxruntime') == 0
    capsys.readouterr()
    assert ((tmp_path / 'auto' / 'x_RAMiT_x2.png').read_bytes()
            == (tmp_path / 'onnx' / 'x_RAMiT_x2.png').read_bytes())
    for flag, precision in (('--bf16', 'bf16'), ('--reference', 'fp32')):  # the tiny network: bf16 is emulated
        assert infer('-i', tmp_path / 'x.png', '-o', tmp_path / flag.strip('-'), '--weights', tiny_weights,
                     '--device', 'cpu', flag) == 0
        assert first_line(capsys.readouterr().out).endswith(f' on cpu ({precision}, torch)'), flag
    # --compile: the outputs exist, so the line is printed and nothing is compiled (that costs a minute).
    assert infer('-i', tmp_path / 'x.png', '-o', tmp_path / 'auto', *weights, '--compile') == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(' on cpu (fp32, torch, torch.compile mode auto)')
    assert lines[-1].endswith(': 0 written, 1 skipped (output exists; --overwrite replaces it), 0 failed, of 1 '
                              'image(s)')


def test_onnxruntime_refuses_options_of_the_torch_backend(slim_x2, tmp_path, capsys, infer, image_file):
    image_file(tmp_path / 'x.png', 8, 8)
    for flag in ('--bf16', '--reference', '--compile'):
        assert infer('-i', tmp_path / 'x.png', '-o', tmp_path / 'o', '--weights', slim_x2, '--backend',
                     'onnxruntime', flag) == 2
        assert capsys.readouterr().err == ('ramit infer: error: --backend onnxruntime runs the exported graph: '
                                           '--compile, --reference and --bf16 are options of --backend torch\n')
    assert not (tmp_path / 'o').exists()


# ---------------------------------------------------------------------------------------- checkpoints, options
def test_gray_network_and_task_naming(reference_dir, tmp_path, capsys, infer, image_file):
    """A scale-1 checkpoint copied under another name needs --task; the published name tells it."""
    own = tmp_path / 'mine.pth'
    shutil.copy(reference_dir / 'weights' / 'RAMiT-1_CDN.pth', own)
    image_file(tmp_path / 'x.png', 16, 16, 3, 7)
    torch_backend = ['--backend', 'torch']  # the backend is not what this is about: no export of RAMiT-1
    assert infer('-i', tmp_path / 'x.png', '-o', tmp_path / 'o', '--weights', own, *torch_backend) == 2
    err = capsys.readouterr().err
    assert err.strip().endswith('a RAMiT-1 scale-1 checkpoint can be any of dn/lle/dr (same shapes); give --task')
    assert len(err.strip().splitlines()) == 1
    assert infer('-i', tmp_path / 'x.png', '-o', tmp_path / 'o', '--weights', own, '--task', 'lle',
                 *torch_backend) == 0
    assert (tmp_path / 'o' / 'x_RAMiT_lle.png').is_file()
    assert infer('-i', tmp_path / 'x.png', '-o', tmp_path / 'o', '--weights',
                 reference_dir / 'weights' / 'RAMiT-1_CDN.pth', *torch_backend) == 0
    assert (tmp_path / 'o' / 'x_RAMiT_dn.png').is_file()


@pytest.mark.parametrize('flags,message', [
    (['--scale', '3'], '--scale 3 contradicts the checkpoint, which is x2'),
    (['--variant', 'RAMiT-1'], '--variant RAMiT-1 contradicts the checkpoint, which is RAMiT-slimSR'),
    (['--task', 'dn'], '--task dn contradicts the checkpoint, which fits task(s) sr'),
    (['--tile', '16', '--tile-overlap', '16'], '--tile 16 --tile-overlap 16: need --tile > --tile-overlap >= 0'),
])
def test_option_errors_are_one_line(slim_x2, tmp_path, capsys, infer, image_file, flags, message):
    image_file(tmp_path / 'x.png', 8, 8)
    assert infer('-i', tmp_path / 'x.png', '-o', tmp_path / 'o', '--weights', slim_x2, *flags) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / 'o').exists()


def test_missing_input_is_one_line_and_nothing_is_written(slim_x2, tmp_path, capsys, infer, image_file):
    image_file(tmp_path / 'x.png', 8, 8)
    assert infer('-i', tmp_path / 'x.png', tmp_path / 'nope*.png', '-o', tmp_path / 'o', '--weights', slim_x2) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f'ramit infer: error: -i {tmp_path / "nope*.png"}: no such file, folder or matching images']
    assert not (tmp_path / 'o').exists()


def test_a_missing_published_file_name_is_no_such_file_and_never_a_download(tmp_path, capsys, monkeypatch, infer,
                                                                            image_file):
    """`--weights RAMiT-1_X2.pth` names a file; only the bare name RAMiT-1_X2 downloads (from RAMIT_URL_BASE, made
    unreachable here: an attempt would end in 'download failed' with status 1, not this)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('RAMIT_URL_BASE', 'http://127.0.0.1:9/unreachable')
    monkeypatch.setenv('RAMIT_CACHE', str(tmp_path / 'cache'))
    image_file(tmp_path / 'x.png', 8, 8)
    assert infer('-i', 'x.png', '-o', 'o', '--weights', 'RAMiT-1_X2.pth') == 2
    assert capsys.readouterr().err == ('ramit infer: error: --weights RAMiT-1_X2.pth: no such file (to download the '
                                       'published model, give its name: RAMiT-1_X2)\n')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['x.png']  # no cache folder, no output folder
    # The bare name does try the (unreachable) mirror: so the line above was not a failed download.
    assert infer('-i', 'x.png', '-o', 'o', '--weights', 'RAMiT-1_X2') == 1
    err = capsys.readouterr().err
    assert 'http://127.0.0.1:9/unreachable/RAMiT-1_X2.pth: download failed' in err
    assert not list((tmp_path / 'cache').iterdir())


def test_names_that_collide_get_their_extension_or_are_refused(slim_x2, tmp_path, capsys, infer, image_file):
    src = tmp_path / 'in'
    src.mkdir()
    image_file(src / 'a.png', 12, 14, 3, 1)
    image_file(src / 'a.jpg', 10, 9, 3, 2)
    image_file(src / 'b.png', 8, 8, 3, 3)
    out = tmp_path / 'out'
    assert infer('-i', src, '-o', out, '--weights', slim_x2) == 0
    assert sorted(p.name for p in out.iterdir()) == ['a_jpg_RAMiT_x2.png', 'a_png_RAMiT_x2.png', 'b_RAMiT_x2.png']
    assert cv2.imread(str(out / 'a_png_RAMiT_x2.png')).shape == (24, 28, 3)
    assert cv2.imread(str(out / 'a_jpg_RAMiT_x2.png')).shape == (20, 18, 3)
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(f'{out}: 3 written, 0 skipped')
    # Same name and extension in two folders: no name tells them apart, so the run is refused before any work.
    (tmp_path / 'other').mkdir()
    image_file(tmp_path / 'other' / 'b.png', 8, 8, 3, 4)
    assert infer('-i', src / 'b.png', tmp_path / 'other' / 'b.png', '-o', tmp_path / 'o2', '--weights',
                 slim_x2) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"ramit infer: error: {src / 'b.png'} and {tmp_path / 'other' / 'b.png'} would both be written as "
        'b_png_RAMiT_x2.png; rename one or restore them in separate runs']
    assert not (tmp_path / 'o2').exists()


def test_outputs_get_the_umask_mode(tiny_weights, tmp_path, infer, image_file, umask_022):
    image_file(tmp_path / 'x.png', 8, 8)
    assert infer('-i', tmp_path / 'x.png', '-o', tmp_path / 'o', '--weights', tiny_weights, '--backend',
                 'torch') == 0
    assert stat.S_IMODE((tmp_path / 'o' / 'x_RAMiT_x2.png').stat().st_mode) == 0o644


def test_custom_checkpoint_and_threads(tmp_path, capsys, infer, image_file):
    """A network of no published size, saved as BasicSR does, restores images; --threads sets torch's threads."""
    torch.manual_seed(0)
    net = RAMiT('RAMiT', 'dn', dim=32, depths=(1, 2, 1, 1), exp_factor=1.5, fuse_expand_groups=2).eval()
    torch.save({'params': net.state_dict()}, tmp_path / 'net_g_latest.pth')
    image_file(tmp_path / 'x.png', 20, 24, 3, 5)
    threads = torch.get_num_threads()
    try:
        assert infer('-i', tmp_path / 'x.png', '-o', tmp_path / 'o', '--weights', tmp_path / 'net_g_latest.pth',
                     '--task', 'dn', '--threads', '2', '--backend', 'torch') == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert first_line(capsys.readouterr().out) == (
        'RAMiT colour denoising (3 channels) with dim=32, depths=(1, 2, 1, 1), exp_factor=1.5, fuse_expand_groups=2 '
        f"from {tmp_path / 'net_g_latest.pth'} on cpu (fp32, torch)")
    expected = np.round(restored(tmp_path / 'net_g_latest.pth', tmp_path / 'x.png', 'dn'))
    assert np.abs(cv2.imread(str(tmp_path / 'o' / 'x_RAMiT_dn.png')).astype(np.float64) - expected).max() <= 1


def test_half_precision_within_2_of_255_at_the_99th_percentile(reference_dir, datasets_dir, tmp_path, infer):
    """float16 and bfloat16 against float32 on crops of two Set5 photos (x4 inputs: 64x64 of the bird, the woman's
    upper half; float16 is slow on CPUs), 8-bit outputs, the PyTorch backend for all three."""
    weights = reference_dir / 'weights' / 'RAMiT-slimSR_X4.pth'
    lr = [tmp_path / 'birdx4.png', tmp_path / 'womanx4.png']
    bird, woman = (cv2.imread(str(datasets_dir / 'Set5' / 'LR_bicubic' / 'X4' / p.name)) for p in lr)
    assert cv2.imwrite(str(lr[0]), bird[4:68, 4:68]) and cv2.imwrite(str(lr[1]), woman[:woman.shape[0] // 2])
    common = ['--weights', weights, '--threads', '1', '--backend', 'torch']
    assert infer('-i', *lr, '-o', tmp_path / 'fp32', *common) == 0
    for flag in ('--half', '--bf16'):
        assert infer('-i', *lr, '-o', tmp_path / flag, *common, flag) == 0
        diffs = []
        for path in sorted((tmp_path / 'fp32').iterdir()):
            full = cv2.imread(str(path)).astype(np.int16)
            half = cv2.imread(str(tmp_path / flag / path.name)).astype(np.int16)
            diffs.append(np.abs(full - half).ravel())
        diffs = np.concatenate(diffs)
        assert len(list((tmp_path / flag).iterdir())) == 2
        assert np.percentile(diffs, 99) <= 2 and diffs.max() <= 16, flag


def test_tile_auto_runs_whole_when_the_image_fits_and_tiles_under_a_memory_limit(tiny_weights, tmp_path, capsys,
                                                                                 infer, image_file):
    """The tiny network (its memory probe is the cheap one): whole when it fits, tiles under --max-memory."""
    src = tmp_path / 'in'
    src.mkdir()
    image_file(src / 'big.png', 160, 200, 3, 7)
    for name, extra in (('whole', []), ('auto', ['--tile', 'auto']),
                        ('limited', ['--tile', 'auto', '--max-memory', '20'])):
        assert infer('-i', src, '-o', tmp_path / name, '--weights', tiny_weights, '--threads', '1', '--backend',
                     'torch', *extra) == 0
    err = capsys.readouterr().err
    out = {name: cv2.imread(str(tmp_path / name / 'big_RAMiT_x2.png')).astype(np.int16)
           for name in ('whole', 'auto', 'limited')}
    assert np.array_equal(out['auto'], out['whole'])  # fits: no tiles at all
    assert err.count('does not fit the memory: tiles of ') == 1
    tile = int(err.split('does not fit the memory: tiles of ')[1].split()[0])
    assert tile % 16 == 0 and 32 <= tile < 200  # multiples of the tiny network's padding unit
    diff = np.abs(out['limited'] - out['whole'])
    assert 0 < diff.mean() < 1.5  # tiled: close, not equal (CH-SA attends over each whole tile)
    assert infer('-i', src, '-o', tmp_path / 'x', '--weights', tiny_weights, '--max-memory', '100') == 2
    assert capsys.readouterr().err.strip() == ('ramit infer: error: --max-memory plans the tiles of --tile auto; add '
                                               '--tile auto')


class ProbeError(Exception):
    """Raised by a memory probe that must not run."""


def test_tile_auto_probes_no_memory_when_every_output_exists(tiny_weights, tmp_path, capsys, monkeypatch, infer,
                                                             image_file):
    import ramit.tiling

    image_file(tmp_path / 'x.png', 12, 16)
    argv = ['-i', tmp_path / 'x.png', '-o', tmp_path / 'o', '--weights', tiny_weights, '--backend', 'torch']
    assert infer(*argv) == 0
    capsys.readouterr()

    def no_probe(net):
        raise ProbeError('the memory of the device was probed')

    monkeypatch.setattr(ramit.tiling, 'traced_memory_model', no_probe)
    assert infer(*argv, '--tile', 'auto') == 0
    assert capsys.readouterr().out.splitlines()[-1] == (f"{tmp_path / 'o'}: 0 written, 1 skipped (output exists; "
                                                        '--overwrite replaces it), 0 failed, of 1 image(s)')
    with pytest.raises(ProbeError):  # with work to do, --tile auto does probe: the stub is in the way
        infer(*argv, '--tile', 'auto', '--overwrite')


def test_a_tile_below_the_padding_unit_gets_a_note(tiny_weights, tmp_path, capsys, infer, image_file):
    image_file(tmp_path / 'x.png', 4, 4)
    assert infer('-i', tmp_path / 'x.png', '-o', tmp_path / 'o', '--weights', tiny_weights, '--backend', 'torch',
                 '--tile', '1', '--tile-overlap', '0') == 0
    # The tiny network pads to 2 ** (4 stages - 2) * window 4 = 16.
    assert ("note: --tile 1 is smaller than the network's padding unit (16): every tile is padded to 16x16, about "
            '256x the work of --tile 16') in capsys.readouterr().err
    assert cv2.imread(str(tmp_path / 'o' / 'x_RAMiT_x2.png')).shape == (8, 8, 3)


def test_compiled_inference_equals_eager(tmp_path, compile_without_inductor, infer, image_file):
    """`--compile`: the same images as the eager run (float32, tiny custom network), compiled once for the one
    image size (static shapes)."""
    torch.manual_seed(0)
    net = RAMiT('RAMiT-1', 'sr', 2, dim=16, depths=(1, 1, 1, 1), num_heads=(2, 2, 2, 2), window_size=4)
    torch.save(net.state_dict(), tmp_path / 'tiny.pth')
    src = tmp_path / 'in'
    src.mkdir()
    for i in range(2):
        image_file(src / f'{i}.png', 32, 32, 3, i)
    for name, extra in (('eager', ['--backend', 'torch']), ('compiled', ['--compile'])):
        assert infer('-i', src, '-o', tmp_path / name, '--weights', tmp_path / 'tiny.pth', '--threads', '1',
                     *extra) == 0
    assert [call['dynamic'] for call in compile_without_inductor] == [False]
    for i in range(2):
        eager = cv2.imread(str(tmp_path / 'eager' / f'{i}_RAMiT_x2.png')).astype(np.int16)
        compiled = cv2.imread(str(tmp_path / 'compiled' / f'{i}_RAMiT_x2.png')).astype(np.int16)
        assert np.abs(eager - compiled).max() <= 1


# ------------------------------------------------------------------------------------------ users' files
def test_overwrite_replaces_only_what_ramit_infer_wrote(tiny_weights, tmp_path, capsys, infer, image_file):
    """`-i coll -o coll --overwrite` where coll holds a user's a_RAMiT_x2.png: that file is an input and stays
    byte-identical; an output that ramit infer wrote (its PNG says so) is replaced."""
    coll = tmp_path / 'coll'
    coll.mkdir()
    image_file(coll / 'a.png', 12, 12, 3, 0)
    users = image_file(coll / 'a_RAMiT_x2.png', 24, 24, 3, 1)
    users_bytes = users.read_bytes()
    argv = ['-i', coll, '-o', coll, '--weights', tiny_weights, '--overwrite', '--backend', 'torch']
    assert infer(*argv) == 1
    captured = capsys.readouterr()
    assert users.read_bytes() == users_bytes
    assert (f"{coll / 'a.png'}: {users} exists and was not written by ramit infer; left as it is (move it, or use "
            'another -o)') in captured.err
    assert captured.out.splitlines()[-1] == (f'{coll}: 1 written, 0 skipped (output exists; --overwrite replaces '
                                             'it), 1 failed, of 2 image(s); failed: a.png')
    ours = coll / 'a_RAMiT_x2_RAMiT_x2.png'  # the user's image restored
    good = ours.read_bytes()
    # An earlier output of ramit infer, even one since changed, is replaced (and is not an input of the rerun).
    ours.write_bytes(encode_png(np.zeros((48, 48, 3), np.float32), None, 255, WRITER))
    assert infer(*argv) == 1
    captured = capsys.readouterr()
    assert f'{coll}: 1 earlier output(s) of ramit infer are not inputs; left out' in captured.err
    assert captured.out.splitlines()[-1].startswith(f'{coll}: 1 written, 0 skipped')
    assert ours.read_bytes() == good and users.read_bytes() == users_bytes
    assert sorted(p.name for p in coll.iterdir()) == ['a.png', 'a_RAMiT_x2.png', 'a_RAMiT_x2_RAMiT_x2.png']


def test_exif_orientation_is_applied(tiny_weights, tmp_path, capsys, infer, smooth):
    """A landscape JPEG with EXIF Orientation=6 is displayed portrait: restored and written as displayed."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(np.ascontiguousarray(smooth(16, 24, 3, 0)[:, :, ::-1])).save(tmp_path / 'photo.jpg',
                                                                                 exif=exif, quality=95)
    # OpenCV's imread applies the orientation too: the displayed pixels, restored without any orientation.
    cv2.imwrite(str(tmp_path / 'displayed.png'), cv2.imread(str(tmp_path / 'photo.jpg')))
    assert infer('-i', tmp_path / 'photo.jpg', tmp_path / 'displayed.png', '-o', tmp_path / 'o', '--weights',
                 tiny_weights, '--backend', 'torch') == 0
    err = capsys.readouterr().err
    assert f"{tmp_path / 'photo.jpg'}: EXIF orientation 6 applied (restored as displayed)" in err
    assert 'displayed.png: EXIF' not in err
    photo = cv2.imread(str(tmp_path / 'o' / 'photo_RAMiT_x2.png'))
    assert photo.shape == (48, 32, 3)  # portrait
    assert np.array_equal(photo, cv2.imread(str(tmp_path / 'o' / 'displayed_RAMiT_x2.png')))


def test_an_input_name_too_long_for_its_output_fails_alone(tiny_weights, tmp_path, capsys, infer, image_file):
    """A 251-character input name gives a 260-character output name, which no file system takes: that image is
    reported and counted as failed, the others are written."""
    src = tmp_path / 'in'
    src.mkdir()
    long = image_file(src / ('n' * 247 + '.png'), 8, 8)
    assert len(long.name) == 251
    image_file(src / 'b.png', 8, 8, 3, 1)
    out = tmp_path / 'o'
    assert infer('-i', src, '-o', out, '--weights', tiny_weights, '--backend', 'torch') == 1
    captured = capsys.readouterr()
    assert f"{long}: cannot write {out / ('n' * 247 + '_RAMiT_x2.png')} (" in captured.err
    assert 'File name too long' in captured.err
    assert captured.out.splitlines()[-1] == (f'{out}: 1 written, 0 skipped (output exists; --overwrite replaces '
                                             f'it), 1 failed, of 2 image(s); failed: {long.name}')
    assert sorted(p.name for p in out.iterdir()) == ['b_RAMiT_x2.png']


def test_a_read_only_output_folder_is_refused_before_any_work(tiny_weights, tmp_path, capsys, monkeypatch, infer,
                                                              image_file):
    import ramit_cli.prechecks as prechecks

    image_file(tmp_path / 'x.png', 8, 8)
    out = tmp_path / 'ro'
    out.mkdir()
    out.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: answer as the folder's mode answers any other user
        real = os.access

        def access(path, mode, **kwargs) -> bool:
            if Path(path) == out:
                return not mode & os.W_OK
            return real(path, mode, **kwargs)

        monkeypatch.setattr(prechecks.os, 'access', access)
    try:
        assert infer('-i', tmp_path / 'x.png', '-o', out, '--weights', tiny_weights) == 2
    finally:
        out.chmod(0o755)
    captured = capsys.readouterr()
    assert captured.err == f'ramit infer: error: -o {out}: this folder is not writable; nothing was restored\n'
    assert captured.out == '' and list(out.iterdir()) == []


def test_a_dangling_image_link_in_an_input_folder_is_named(tiny_weights, tmp_path, capsys, infer, image_file):
    src = tmp_path / 'in'
    src.mkdir()
    image_file(src / 'a.png', 8, 8)
    (src / 'gone.png').symlink_to(tmp_path / 'deleted.png')
    assert infer('-i', src, '-o', tmp_path / 'o', '--weights', tiny_weights, '--backend', 'torch') == 0
    assert f'-i {src}: 1 link(s) to missing files left out, e.g. gone.png' in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / 'o').iterdir()) == ['a_RAMiT_x2.png']


# ------------------------------------------------------------------------------------- faults and hostile inputs
def huge_png_header(path: Path, side: int = 50000) -> None:
    """A PNG whose header claims side x side pixels (the rest is a few bytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))

    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', side, side, 8, 2, 0, 0, 0))
                     + chunk(b'IDAT', zlib.compress(b'\0' * 100)) + chunk(b'IEND', b''))


def wrapped_restore(monkeypatch, change: Callable) -> None:
    """Make ramit_cli.infer's restore_tensor return ``change(batch, output)`` (or raise from ``change``)."""
    import ramit_cli.infer as cli_infer

    def restore(run, batch, *args):
        return change(batch, restore_tensor(run, batch, *args))

    monkeypatch.setattr(cli_infer, 'restore_tensor', restore)


def test_non_finite_weights_or_outputs_are_never_written(tiny_weights, tmp_path, capsys, monkeypatch, ramit, infer,
                                                         image_file):
    src = tmp_path / 'in'
    src.mkdir()
    for i in range(2):
        image_file(src / f'{i}.png', 12, 12, 3, i)
    state = torch.load(tiny_weights)
    state['shallow.conv.weight'][0, 0, 0, 0] = float('nan')
    torch.save(state, tmp_path / 'nan.pth')
    assert infer('-i', src, '-o', tmp_path / 'o', '--weights', tmp_path / 'nan.pth') == 2
    nan_error = (f"{tmp_path / 'nan.pth'}: 1 tensor(s) hold NaN or inf values (e.g. shallow.conv.weight): a damaged "
                 'or diverged checkpoint\n')
    assert capsys.readouterr().err == 'ramit infer: error: ' + nan_error
    assert not (tmp_path / 'o').exists()
    # The same check for every command that builds the network: no NaN model file, no NaN ONNX model.
    assert ramit('convert', str(tmp_path / 'nan.pth'), str(tmp_path / 'nan.safetensors')) == 2
    assert capsys.readouterr().err == 'ramit convert: error: ' + nan_error
    assert not (tmp_path / 'nan.safetensors').exists()

    # Finite weights can still give inf (float16 overflow): such an output is reported, never written as an image.
    def overflowing(batch: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        out[0, 0, 0, 0] = float('inf')
        return out

    wrapped_restore(monkeypatch, overflowing)
    assert infer('-i', src / '0.png', src / '1.png', '-o', tmp_path / 'o', '--weights', tiny_weights,
                 '--backend', 'torch') == 1
    captured = capsys.readouterr()
    assert f'{src / "0.png"}: the output has NaN or inf values (weights {tiny_weights}); not written' in captured.err
    assert captured.out.strip().splitlines()[-1].endswith('0 written, 0 skipped (output exists; --overwrite replaces '
                                                          'it), 2 failed, of 2 image(s); failed: 0.png, 1.png')
    assert list((tmp_path / 'o').iterdir()) == []


def test_an_image_too_large_to_decode_is_skipped_and_the_others_restored(tiny_weights, tmp_path, capsys, infer,
                                                                         image_file):
    src = tmp_path / 'in'
    src.mkdir()
    huge_png_header(src / 'huge.png')
    image_file(src / 'small.png', 12, 12)
    assert infer('-i', src, '-o', tmp_path / 'o', '--weights', tiny_weights, '--tile', 'auto', '--backend',
                 'torch') == 1
    captured = capsys.readouterr()
    assert (f"{src / 'huge.png'}: cannot be decoded: more pixels than OpenCV decodes (CV_IO_MAX_IMAGE_PIXELS, 2^30 by "
            'default); skipped') in captured.err
    assert sorted(p.name for p in (tmp_path / 'o').iterdir()) == ['small_RAMiT_x2.png']


def test_output_folder_problems_are_one_line(tiny_weights, tmp_path, capsys, infer, image_file):
    image_file(tmp_path / 'x.png', 8, 8)
    (tmp_path / 'file').write_text('mine')
    for out, message in ((tmp_path / 'file', f"-o {tmp_path / 'file'}: is a file; -o names the folder the outputs go "
                                             'to'),
                         (tmp_path / 'file' / 'o', f"{tmp_path / 'file' / 'o'}: cannot be written (Not a directory)")):
        assert infer('-i', tmp_path / 'x.png', '-o', out, '--weights', tiny_weights, '--backend', 'torch') == 2
        assert capsys.readouterr().err == f'ramit infer: error: {message}\n'
    assert (tmp_path / 'file').read_text() == 'mine'


def test_a_full_disk_ends_the_run_with_one_line_and_no_partial_file(tiny_weights, tmp_path, capsys, monkeypatch,
                                                                    infer, image_file):
    import errno

    image_file(tmp_path / 'x.png', 8, 8)
    real_write = Path.write_bytes

    def disk_full(self, data):
        real_write(self, data[:10])
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(Path, 'write_bytes', disk_full)
    assert infer('-i', tmp_path / 'x.png', '-o', tmp_path / 'o', '--weights', tiny_weights, '--backend',
                 'torch') == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"ramit infer: error: {tmp_path / 'o' / 'x_RAMiT_x2.png'}: cannot be written (No space left on "
                   'device); nothing was left half-written')
    assert list((tmp_path / 'o').iterdir()) == []


def test_an_image_that_does_not_fit_the_memory_is_skipped_by_name(tiny_weights, tmp_path, capsys, monkeypatch,
                                                                  infer, image_file):
    image_file(tmp_path / 'big.png', 16, 24)
    image_file(tmp_path / 'small.png', 8, 8, 3, 1)

    def out_of_memory(batch: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if batch.shape[-1] == 24:
            raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 24.00 GiB')
        return out

    wrapped_restore(monkeypatch, out_of_memory)
    assert infer('-i', tmp_path / 'big.png', tmp_path / 'small.png', '-o', tmp_path / 'o', '--weights',
                 tiny_weights, '--backend', 'torch') == 1
    captured = capsys.readouterr()
    assert (f"{tmp_path / 'big.png'}: 24x16 does not fit the memory of cpu; use --tile auto (or a smaller --tile); "
            'skipped') in captured.err
    assert 'Traceback' not in captured.err
    assert sorted(p.name for p in (tmp_path / 'o').iterdir()) == ['small_RAMiT_x2.png']


def test_output_folder_inside_the_input_folder_is_not_restored_again(tiny_weights, tmp_path, capsys, infer,
                                                                     image_file):
    src = tmp_path / 'photos'
    src.mkdir()
    image_file(src / 'a.png', 10, 10)
    argv: List = ['-i', src, '-o', src, '--weights', tiny_weights, '--backend', 'torch']
    assert infer(*argv) == 0
    capsys.readouterr()
    assert infer(*argv) == 0  # the rerun: a_RAMiT_x2.png is an earlier output, not a new input
    captured = capsys.readouterr()
    assert f'{src}: 1 earlier output(s) of ramit infer are not inputs; left out' in captured.err
    assert captured.out.strip().splitlines()[-1] == (f'{src}: 0 written, 1 skipped (output exists; --overwrite '
                                                     'replaces it), 0 failed, of 1 image(s)')
    assert sorted(p.name for p in src.iterdir()) == ['a.png', 'a_RAMiT_x2.png']


def test_an_animation_restores_its_first_frame_and_says_so(tiny_weights, tmp_path, capsys, infer, smooth):
    from PIL import Image

    frames = [Image.fromarray(smooth(10, 12, 3, i)) for i in range(3)]
    frames[0].save(tmp_path / 'anim.png', save_all=True, append_images=frames[1:])
    assert infer('-i', tmp_path / 'anim.png', '-o', tmp_path / 'o', '--weights', tiny_weights, '--backend',
                 'torch') == 0
    assert (f"{tmp_path / 'anim.png'}: 3 frames (an animation or a multi-page file); only the first is restored"
            in capsys.readouterr().err)
    assert cv2.imread(str(tmp_path / 'o' / 'anim_RAMiT_x2.png')).shape == (20, 24, 3)
