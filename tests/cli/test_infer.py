"""`ramit infer` on users' images: formats, bit depths, alpha, gray, corrupt files, overwrite, name collisions,
file modes, option errors."""
import shutil
import stat
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from ramit_cli.main import main as ramit
from ramit_plugin import RAMiT
from ramit_plugin.inference import build_network, read_image, restore, upscale_alpha


def main(argv):
    """`ramit infer ARGV` in this process; returns the exit status."""
    return ramit(['infer', *argv], prog='ramit')


def smooth(h, w, c, seed, dtype=np.uint8):
    """A smooth random image (upscaled noise) of the given dtype."""
    top = 255 if dtype == np.uint8 else 65535
    small = np.random.default_rng(seed).uniform(0, top, (4, 4, c)).astype(np.float32)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(img, 0, top).astype(dtype).reshape(h, w, c)


@pytest.fixture
def weights(reference_dir):
    return reference_dir / 'weights' / 'RAMiT-slimSR_X2.pth'


def test_folder_mixing_formats(weights, tmp_path, capsys):
    src = tmp_path / 'in'
    src.mkdir()
    cv2.imwrite(str(src / 'colour.png'), smooth(20, 28, 3, 0))
    cv2.imwrite(str(src / 'photo.jpg'), smooth(21, 19, 3, 1))
    cv2.imwrite(str(src / 'gray.png'), smooth(18, 22, 1, 2)[:, :, 0])
    rgba = np.concatenate([smooth(20, 24, 3, 3), smooth(20, 24, 1, 4)], axis=2)
    cv2.imwrite(str(src / 'rgba.png'), rgba)
    cv2.imwrite(str(src / 'deep.tif'), smooth(17, 23, 3, 5, np.uint16))
    (src / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n this is not an image')
    (src / 'notes.txt').write_text('ignored: not an image suffix')
    out = tmp_path / 'out'
    cmd = [sys.executable, '-m', 'ramit_cli', 'infer', '-i', str(src), '-o', str(out),
           '--weights', str(weights)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert 'broken.png: cannot be read as an image (corrupt file or unsupported format); skipped' in proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == (f'{out}: 5 written, 0 skipped (output exists; --overwrite '
                                                    'replaces it), 1 failed, of 6 image(s); failed: broken.png')
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f'{n}_RAMiT_x2.png' for n in ('colour', 'photo', 'gray', 'rgba', 'deep'))

    def written(name):
        return cv2.imread(str(out / f'{name}_RAMiT_x2.png'), cv2.IMREAD_UNCHANGED)

    assert written('colour').shape == (40, 56, 3) and written('colour').dtype == np.uint8
    assert written('photo').shape == (42, 38, 3)
    assert written('gray').shape == (36, 44) and written('gray').dtype == np.uint8
    assert written('deep').shape == (34, 46, 3) and written('deep').dtype == np.uint16
    got = written('rgba')
    assert got.shape == (40, 48, 4)
    alpha = upscale_alpha(rgba[:, :, 3].astype(np.float32) / 255, 2)
    assert np.array_equal(got[:, :, 3], np.round(alpha * 255).astype(np.uint8))

    # The colour result is the network's protocol output, quantised (BGR on disk).
    net = build_network(weights)
    x = torch.from_numpy(read_image(src / 'colour.png').rgb).permute(2, 0, 1)[None]
    expected = np.round(restore(net, x)[0].clamp(0, 1).permute(1, 2, 0).numpy()[:, :, ::-1] * 255)
    assert np.abs(written('colour').astype(np.float64) - expected).max() <= 1
    # 16-bit output keeps its precision: not a multiple of 257 everywhere as an 8-bit round trip would be.
    assert np.any(written('deep') % 257)

    # A second run skips existing outputs unless --overwrite, and says so in its summary.
    before = (out / 'colour_RAMiT_x2.png').stat().st_mtime_ns
    assert main(['-i', str(src / 'colour.png'), str(src / 'photo.jpg'), '-o', str(out), '--weights',
                 str(weights)]) == 0
    assert (out / 'colour_RAMiT_x2.png').stat().st_mtime_ns == before
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        f'{out}: 0 written, 2 skipped (output exists; --overwrite replaces it), 0 failed, of 2 image(s)')
    assert main(['-i', str(src / 'colour.png'), '-o', str(out), '--weights', str(weights), '--overwrite']) == 0
    assert (out / 'colour_RAMiT_x2.png').stat().st_mtime_ns != before
    assert not [p for p in out.iterdir() if p.name.startswith('.')]  # no temporary files left


def test_glob_batch_and_tiles(weights, tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f'img{i}.png'), smooth(24, 40, 3, 10 + i))
    assert main(['-i', str(tmp_path / 'img*.png'), '-o', str(tmp_path / 'a'), '--weights', str(weights),
                 '--batch', '2']) == 0
    assert main(['-i', str(tmp_path / 'img0.png'), '-o', str(tmp_path / 'b'), '--weights', str(weights),
                 '--tile', '16', '--tile-overlap', '4', '--batch', '3']) == 0
    batched = cv2.imread(str(tmp_path / 'a' / 'img0_RAMiT_x2.png'))
    single = cv2.imread(str(tmp_path / 'b' / 'img0_RAMiT_x2.png'))
    assert batched.shape == single.shape == (48, 80, 3)
    assert len(list((tmp_path / 'a').iterdir())) == 3


def test_gray_network_and_task_naming(reference_dir, tmp_path, capsys):
    """A scale-1 checkpoint copied under another name needs --task; the published name tells it."""
    own = tmp_path / 'mine.pth'
    shutil.copy(reference_dir / 'weights' / 'RAMiT-1_CDN.pth', own)
    cv2.imwrite(str(tmp_path / 'x.png'), smooth(16, 16, 3, 7))
    assert main(['-i', str(tmp_path / 'x.png'), '-o', str(tmp_path / 'o'), '--weights', str(own)]) == 2
    err = capsys.readouterr().err
    assert err.strip().endswith('a RAMiT-1 scale-1 checkpoint can be any of dn/lle/dr (same shapes); give --task')
    assert len(err.strip().splitlines()) == 1
    assert main(['-i', str(tmp_path / 'x.png'), '-o', str(tmp_path / 'o'), '--weights', str(own),
                 '--task', 'lle']) == 0
    assert (tmp_path / 'o' / 'x_RAMiT_lle.png').is_file()
    assert main(['-i', str(tmp_path / 'x.png'), '-o', str(tmp_path / 'o'),
                 '--weights', str(reference_dir / 'weights' / 'RAMiT-1_CDN.pth')]) == 0
    assert (tmp_path / 'o' / 'x_RAMiT_dn.png').is_file()


@pytest.mark.parametrize('flags,message', [
    (['--scale', '3'], '--scale 3 contradicts the checkpoint, which is x2'),
    (['--variant', 'RAMiT-1'], '--variant RAMiT-1 contradicts the checkpoint, which is RAMiT-slimSR'),
    (['--task', 'dn'], '--task dn contradicts the checkpoint, which fits task(s) sr'),
    (['--tile', '16', '--tile-overlap', '16'], '--tile 16 --tile-overlap 16: need --tile > --tile-overlap >= 0'),
])
def test_option_errors_are_one_line(weights, tmp_path, capsys, flags, message):
    cv2.imwrite(str(tmp_path / 'x.png'), smooth(8, 8, 3, 0))
    assert main(['-i', str(tmp_path / 'x.png'), '-o', str(tmp_path / 'o'), '--weights', str(weights)] + flags) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_missing_input_is_one_line_and_nothing_is_written(weights, tmp_path, capsys):
    cv2.imwrite(str(tmp_path / 'x.png'), smooth(8, 8, 3, 0))
    assert main(['-i', str(tmp_path / 'x.png'), str(tmp_path / 'nope*.png'), '-o', str(tmp_path / 'o'),
                 '--weights', str(weights)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f'ramit infer: error: -i {tmp_path / "nope*.png"}: no such file, folder or matching images']
    assert not (tmp_path / 'o').exists()


def test_names_that_collide_get_their_extension_or_are_refused(weights, tmp_path, capsys):
    src = tmp_path / 'in'
    src.mkdir()
    cv2.imwrite(str(src / 'a.png'), smooth(12, 14, 3, 1))
    cv2.imwrite(str(src / 'a.jpg'), smooth(10, 9, 3, 2))
    cv2.imwrite(str(src / 'b.png'), smooth(8, 8, 3, 3))
    out = tmp_path / 'out'
    assert main(['-i', str(src), '-o', str(out), '--weights', str(weights)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ['a_jpg_RAMiT_x2.png', 'a_png_RAMiT_x2.png', 'b_RAMiT_x2.png']
    assert cv2.imread(str(out / 'a_png_RAMiT_x2.png')).shape == (24, 28, 3)
    assert cv2.imread(str(out / 'a_jpg_RAMiT_x2.png')).shape == (20, 18, 3)
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(f'{out}: 3 written, 0 skipped')
    # Same name and extension in two folders: no name tells them apart, so the run is refused before any work.
    (tmp_path / 'other').mkdir()
    cv2.imwrite(str(tmp_path / 'other' / 'b.png'), smooth(8, 8, 3, 4))
    assert main(['-i', str(src / 'b.png'), str(tmp_path / 'other' / 'b.png'), '-o', str(tmp_path / 'o2'),
                 '--weights', str(weights)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"ramit infer: error: {src / 'b.png'} and {tmp_path / 'other' / 'b.png'} would both be written as "
        'b_png_RAMiT_x2.png; rename one or restore them in separate runs']
    assert not (tmp_path / 'o2').exists()


def test_outputs_get_the_umask_mode(weights, tmp_path, umask_022):
    cv2.imwrite(str(tmp_path / 'x.png'), smooth(8, 8, 3, 0))
    assert main(['-i', str(tmp_path / 'x.png'), '-o', str(tmp_path / 'o'), '--weights', str(weights)]) == 0
    assert stat.S_IMODE((tmp_path / 'o' / 'x_RAMiT_x2.png').stat().st_mode) == 0o644


def test_custom_checkpoint_and_threads(tmp_path, capsys):
    """A network of no published size, saved as BasicSR does, restores images; --threads sets torch's threads."""
    torch.manual_seed(0)
    net = RAMiT('RAMiT', 'dn', dim=32, depths=(1, 2, 1, 1), exp_factor=1.5, fuse_expand_groups=2).eval()
    torch.save({'params': net.state_dict()}, tmp_path / 'net_g_latest.pth')
    img = smooth(20, 24, 3, 5)
    cv2.imwrite(str(tmp_path / 'x.png'), img)
    threads = torch.get_num_threads()
    try:
        assert main(['-i', str(tmp_path / 'x.png'), '-o', str(tmp_path / 'o'), '--weights',
                     str(tmp_path / 'net_g_latest.pth'), '--task', 'dn', '--threads', '2']) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert capsys.readouterr().out.splitlines()[0].startswith(
        'RAMiT colour denoising (3 channels) with dim=32, depths=(1, 2, 1, 1), exp_factor=1.5, fuse_expand_groups=2 '
        f"from {tmp_path / 'net_g_latest.pth'}")
    x = torch.from_numpy(read_image(tmp_path / 'x.png').rgb).permute(2, 0, 1)[None]
    expected = np.round(restore(net, x)[0].clamp(0, 1).permute(1, 2, 0).numpy()[:, :, ::-1] * 255)
    assert np.abs(cv2.imread(str(tmp_path / 'o' / 'x_RAMiT_dn.png')).astype(np.float64) - expected).max() <= 1


@pytest.mark.parametrize('flag', ['--half', '--bf16'])
def test_half_precision_within_2_of_255_at_the_99th_percentile(reference_dir, datasets_dir, tmp_path, flag):
    """float16 / bfloat16 against float32 on four Set5 photos (x4 inputs; 'baby', the largest, left out: float16
    is slow on CPUs), 8-bit outputs."""
    weights = reference_dir / 'weights' / 'RAMiT-slimSR_X4.pth'
    lr = [str(datasets_dir / 'Set5' / 'LR_bicubic' / 'X4' / f'{name}x4.png')
          for name in ('bird', 'butterfly', 'head', 'woman')]
    assert main(['-i', *lr, '-o', str(tmp_path / 'fp32'), '--weights', str(weights), '--threads', '2']) == 0
    assert main(['-i', *lr, '-o', str(tmp_path / 'half'), '--weights', str(weights), '--threads', '2', flag]) == 0
    diffs = []
    for path in sorted((tmp_path / 'fp32').iterdir()):
        full = cv2.imread(str(path)).astype(np.int16)
        half = cv2.imread(str(tmp_path / 'half' / path.name)).astype(np.int16)
        diffs.append(np.abs(full - half).ravel())
    diffs = np.concatenate(diffs)
    assert len(list((tmp_path / 'half').iterdir())) == 4
    assert np.percentile(diffs, 99) <= 2 and diffs.max() <= 16


def test_tile_auto_runs_whole_when_the_image_fits_and_tiles_under_a_memory_limit(weights, tmp_path, capsys):
    src = tmp_path / 'in'
    src.mkdir()
    cv2.imwrite(str(src / 'big.png'), smooth(160, 200, 3, 7))
    for name, extra in (('whole', []), ('auto', ['--tile', 'auto']), ('limited', ['--tile', 'auto',
                                                                                  '--max-memory', '120'])):
        assert main(['-i', str(src), '-o', str(tmp_path / name), '--weights', str(weights), '--threads', '1',
                     *extra]) == 0
    err = capsys.readouterr().err
    out = {name: cv2.imread(str(tmp_path / name / 'big_RAMiT_x2.png')).astype(np.int16)
           for name in ('whole', 'auto', 'limited')}
    assert np.array_equal(out['auto'], out['whole'])  # fits: no tiles at all
    tile = int(err.split('does not fit the memory: tiles of ')[1].split()[0])
    assert tile % 32 == 0 and 64 <= tile < 200
    diff = np.abs(out['limited'] - out['whole'])
    assert 0 < diff.mean() < 1.5  # tiled: close, not equal (CH-SA attends over each whole tile)
    assert main(['-i', str(src), '-o', str(tmp_path / 'x'), '--weights', str(weights), '--max-memory', '100']) == 2
    assert capsys.readouterr().err.strip() == 'ramit infer: error: --max-memory plans the tiles of --tile auto; add ' \
                                              '--tile auto'


def test_compiled_inference_equals_eager(tmp_path, inductor_cache, monkeypatch):
    """`--compile`: the same images as the eager run (float32, tiny custom network, kernels cached for bench)."""
    monkeypatch.setenv('TORCHINDUCTOR_CACHE_DIR', str(inductor_cache))
    torch.manual_seed(0)
    net = RAMiT('RAMiT-1', 'sr', 2, dim=16, depths=(1, 1, 1, 1), num_heads=(2, 2, 2, 2), window_size=4)
    torch.save(net.state_dict(), tmp_path / 'tiny.pth')
    src = tmp_path / 'in'
    src.mkdir()
    for i in range(2):
        cv2.imwrite(str(src / f'{i}.png'), smooth(32, 32, 3, i))
    for name, extra in (('eager', []), ('compiled', ['--compile'])):
        assert main(['-i', str(src), '-o', str(tmp_path / name), '--weights', str(tmp_path / 'tiny.pth'),
                     '--threads', '1', *extra]) == 0
    for i in range(2):
        eager = cv2.imread(str(tmp_path / 'eager' / f'{i}_RAMiT_x2.png')).astype(np.int16)
        compiled = cv2.imread(str(tmp_path / 'compiled' / f'{i}_RAMiT_x2.png')).astype(np.int16)
        assert np.abs(eager - compiled).max() <= 1


# ------------------------------------------------------------------------------------- faults and hostile inputs
@pytest.fixture
def tiny_weights(tmp_path):
    """A tiny x2 RAMiT checkpoint (random weights: these tests are about files, not quality)."""
    torch.manual_seed(0)
    net = RAMiT('RAMiT', 'sr', upscale=2, dim=16, depths=(1, 1, 1, 1), window_size=4, fuse_expand_groups=1)
    torch.save(net.state_dict(), tmp_path / 'tiny.pth')
    return tmp_path / 'tiny.pth'


def huge_png_header(path, side: int = 50000) -> None:
    """A PNG whose header claims side x side pixels (the rest is a few bytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))

    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', side, side, 8, 2, 0, 0, 0))
                     + chunk(b'IDAT', zlib.compress(b'\0' * 100)) + chunk(b'IEND', b''))


def test_non_finite_weights_or_outputs_are_never_written(tiny_weights, tmp_path, capsys, monkeypatch):
    src = tmp_path / 'in'
    src.mkdir()
    for i in range(2):
        cv2.imwrite(str(src / f'{i}.png'), smooth(12, 12, 3, i))
    state = torch.load(tiny_weights)
    state['shallow.conv.weight'][0, 0, 0, 0] = float('nan')
    torch.save(state, tmp_path / 'nan.pth')
    assert main(['-i', str(src), '-o', str(tmp_path / 'o'), '--weights', str(tmp_path / 'nan.pth')]) == 2
    nan_error = (f"{tmp_path / 'nan.pth'}: 1 tensor(s) hold NaN or inf values (e.g. shallow.conv.weight): a damaged "
                 'or diverged checkpoint\n')
    assert capsys.readouterr().err == 'ramit infer: error: ' + nan_error
    assert not (tmp_path / 'o').exists()
    # The same check for every command that builds the network: no NaN model file, no NaN ONNX model.
    assert ramit(['convert', str(tmp_path / 'nan.pth'), str(tmp_path / 'nan.safetensors')], prog='ramit') == 2
    assert capsys.readouterr().err == 'ramit convert: error: ' + nan_error
    assert not (tmp_path / 'nan.safetensors').exists()

    # Finite weights can still give inf (float16 overflow): such an output is reported, never written as an image.
    import ramit_plugin.cli.infer as infer

    def overflowing(net, batch, *args):
        out = restore(net, batch, *args)
        out[0, 0, 0, 0] = float('inf')
        return out

    monkeypatch.setattr(infer, 'restore', overflowing)
    assert main(['-i', str(src / '0.png'), str(src / '1.png'), '-o', str(tmp_path / 'o'), '--weights',
                 str(tiny_weights)]) == 1
    captured = capsys.readouterr()
    assert f'{src / "0.png"}: the output has NaN or inf values (weights {tiny_weights}); not written' in captured.err
    assert captured.out.strip().splitlines()[-1].endswith('0 written, 0 skipped (output exists; --overwrite replaces '
                                                          'it), 2 failed, of 2 image(s); failed: 0.png, 1.png')
    assert list((tmp_path / 'o').iterdir()) == []


def test_an_image_too_large_to_decode_is_skipped_and_the_others_restored(tiny_weights, tmp_path, capsys):
    src = tmp_path / 'in'
    src.mkdir()
    huge_png_header(src / 'huge.png')
    cv2.imwrite(str(src / 'small.png'), smooth(12, 12, 3, 0))
    assert main(['-i', str(src), '-o', str(tmp_path / 'o'), '--weights', str(tiny_weights), '--tile', 'auto']) == 1
    captured = capsys.readouterr()
    assert (f"{src / 'huge.png'}: cannot be decoded: more pixels than OpenCV decodes (CV_IO_MAX_IMAGE_PIXELS, 2^30 by "
            'default); skipped') in captured.err
    assert sorted(p.name for p in (tmp_path / 'o').iterdir()) == ['small_RAMiT_x2.png']


def test_output_folder_problems_are_one_line(tiny_weights, tmp_path, capsys):
    cv2.imwrite(str(tmp_path / 'x.png'), smooth(8, 8, 3, 0))
    (tmp_path / 'file').write_text('mine')
    for out, message in ((tmp_path / 'file', f"-o {tmp_path / 'file'}: is a file; -o names the folder the outputs go "
                                             'to'),
                         (tmp_path / 'file' / 'o', f"{tmp_path / 'file' / 'o'}: cannot be written (Not a directory)")):
        assert main(['-i', str(tmp_path / 'x.png'), '-o', str(out), '--weights', str(tiny_weights)]) == 2
        assert capsys.readouterr().err == f'ramit infer: error: {message}\n'
    assert (tmp_path / 'file').read_text() == 'mine'


def test_a_full_disk_ends_the_run_with_one_line_and_no_partial_file(tiny_weights, tmp_path, capsys, monkeypatch):
    import errno
    from pathlib import Path

    cv2.imwrite(str(tmp_path / 'x.png'), smooth(8, 8, 3, 0))
    real_write = Path.write_bytes

    def disk_full(self, data):
        real_write(self, data[:10])
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(Path, 'write_bytes', disk_full)
    assert main(['-i', str(tmp_path / 'x.png'), '-o', str(tmp_path / 'o'), '--weights', str(tiny_weights)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"ramit infer: error: {tmp_path / 'o' / 'x_RAMiT_x2.png'}: cannot be written (No space left on "
                   'device); nothing was left half-written')
    assert list((tmp_path / 'o').iterdir()) == []


def test_an_image_that_does_not_fit_the_memory_is_skipped_by_name(tiny_weights, tmp_path, capsys, monkeypatch):
    import ramit_plugin.cli.infer as infer

    cv2.imwrite(str(tmp_path / 'big.png'), smooth(16, 24, 3, 0))
    cv2.imwrite(str(tmp_path / 'small.png'), smooth(8, 8, 3, 1))

    def out_of_memory(net, batch, *args):
        if batch.shape[-1] == 24:
            raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 24.00 GiB')
        return restore(net, batch, *args)

    monkeypatch.setattr(infer, 'restore', out_of_memory)
    assert main(['-i', str(tmp_path / 'big.png'), str(tmp_path / 'small.png'), '-o', str(tmp_path / 'o'),
                 '--weights', str(tiny_weights)]) == 1
    captured = capsys.readouterr()
    assert (f"{tmp_path / 'big.png'}: 24x16 does not fit the memory of cpu; use --tile auto (or a smaller --tile); "
            'skipped') in captured.err
    assert 'Traceback' not in captured.err
    assert sorted(p.name for p in (tmp_path / 'o').iterdir()) == ['small_RAMiT_x2.png']


def test_output_folder_inside_the_input_folder_is_not_restored_again(tiny_weights, tmp_path, capsys):
    src = tmp_path / 'photos'
    src.mkdir()
    cv2.imwrite(str(src / 'a.png'), smooth(10, 10, 3, 0))
    argv = ['-i', str(src), '-o', str(src), '--weights', str(tiny_weights)]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 0  # the rerun: a_RAMiT_x2.png is an earlier output, not a new input
    captured = capsys.readouterr()
    assert f'{src}: 1 earlier output(s) of ramit infer (*_RAMiT_x2.png) are not inputs; left out' in captured.err
    assert captured.out.strip().splitlines()[-1] == (f'{src}: 0 written, 1 skipped (output exists; --overwrite '
                                                     'replaces it), 0 failed, of 1 image(s)')
    assert sorted(p.name for p in src.iterdir()) == ['a.png', 'a_RAMiT_x2.png']


def test_an_animation_restores_its_first_frame_and_says_so(tiny_weights, tmp_path, capsys):
    from PIL import Image

    frames = [Image.fromarray(smooth(10, 12, 3, i)) for i in range(3)]
    frames[0].save(tmp_path / 'anim.png', save_all=True, append_images=frames[1:])
    assert main(['-i', str(tmp_path / 'anim.png'), '-o', str(tmp_path / 'o'), '--weights', str(tiny_weights)]) == 0
    assert (f"{tmp_path / 'anim.png'}: 3 frames (an animation or a multi-page file); only the first is restored"
            in capsys.readouterr().err)
    assert cv2.imread(str(tmp_path / 'o' / 'anim_RAMiT_x2.png')).shape == (20, 24, 3)
