"""`ramit make-lmdb`, `make-lr` and `extract-subimages` (ramit_plugin.dataprep): BasicSR-compatible outputs,
MATLAB-exact LR, images as displayed (EXIF orientation), and writes that never lose what the user had."""
import json
from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import lmdb
import numpy as np
import pytest
from PIL import Image

import ramit_plugin  # noqa: F401  (the torchvision alias before basicsr)
from basicsr.utils import FileClient
from basicsr.utils.lmdb_util import make_lmdb_from_imgs
from ramit.fileio import OutputRecord
from ramit_cli.main import main
from ramit_plugin import dataprep

RECORD = OutputRecord.NAME


def write_images(folder: Path, shapes: Dict[str, tuple], dtype=np.uint8, seed: int = 0) -> Dict[str, np.ndarray]:
    """Image files ``name -> shape`` of random content in ``folder`` (format from the name); returns name -> array."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = {}
    for name, shape in shapes.items():
        img = rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)
        assert cv2.imwrite(str(folder / name), img)
        images[name] = img
    return images


def run(*argv: str) -> int:
    """Run a `ramit` command in-process (one worker process unless the arguments say otherwise)."""
    argv = list(argv)
    if '--n-thread' not in argv and argv[0] in ('make-lmdb', 'make-lr', 'extract-subimages'):
        argv += ['--n-thread', '1']
    return main(argv, prog='ramit')


def error_line(capsys) -> str:
    """The one-line error a command printed on stderr (progress bars share stderr)."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith('ramit ')]
    assert len(lines) == 1, lines
    return lines[0]


def leftovers(folder: Path) -> List[str]:
    """Hidden staging folders a command left behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith('.'))


def tree(folder: Path) -> Dict[Path, bytes]:
    """Relative path -> bytes of every file below ``folder`` (hidden ones included)."""
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob('*') if p.is_file()}


def listing(folder: Path) -> List[str]:
    """Relative POSIX paths of the files below ``folder`` except the output record."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob('*') if p.is_file() and p.name != RECORD)


def read(path: Path) -> np.ndarray:
    """An image as stored (OpenCV IMREAD_UNCHANGED)."""
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


# ---------------------------------------------------------------------------------------------------- make-lmdb
def test_make_lmdb_keys_meta_info_and_content(tmp_path, capsys):
    images = write_images(tmp_path / 'in', {'b.png': (20, 30, 3), 'a.png': (12, 9), 'c.png': (7, 5, 4)})
    images.update(write_images(tmp_path / 'in', {'d.png': (6, 8, 3)}, dtype=np.uint16))
    (tmp_path / 'in' / 'notes.txt').write_text('not an image')
    assert run('make-lmdb', '--input', str(tmp_path / 'in'), '--output', str(tmp_path / 'x.lmdb'),
               '--n-thread', '2') == 0
    assert 'wrote 4 images' in capsys.readouterr().out
    meta = (tmp_path / 'x.lmdb' / 'meta_info.txt').read_text().splitlines()
    assert meta == ['a.png (12,9,1) 1', 'b.png (20,30,3) 1', 'c.png (7,5,4) 1', 'd.png (6,8,3) 1']
    # Values are stored as BasicSR's own readers expect them: bit depth and channels kept.
    client = FileClient('lmdb', db_paths=[str(tmp_path / 'x.lmdb')], client_keys=['gt'])
    for name, img in images.items():
        stored = cv2.imdecode(np.frombuffer(client.get(name[:-4], 'gt'), np.uint8), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(stored, img)
    assert leftovers(tmp_path) == []


def test_make_lmdb_lr_folder_keys_match_hr(tmp_path):
    write_images(tmp_path / 'lr', {'babyx2.png': (4, 4, 3), 'birdx2.png': (4, 4, 3)})
    assert dataprep.make_lmdb(tmp_path / 'lr', tmp_path / 'lr.lmdb') == ['baby', 'bird']
    assert dataprep.make_lmdb(tmp_path / 'lr', tmp_path / 'keep.lmdb', strip_scale_suffix=False) == [
        'babyx2', 'birdx2']
    with lmdb.open(str(tmp_path / 'lr.lmdb'), readonly=True, lock=False) as env, env.begin() as txn:
        assert sorted(k.decode() for k, _ in txn.cursor()) == ['baby', 'bird']
    # Mixed names are not an LR folder: nothing is stripped.
    write_images(tmp_path / 'mixed', {'fox2.png': (4, 4, 3), 'cat.png': (4, 4, 3)})
    assert dataprep.make_lmdb(tmp_path / 'mixed', tmp_path / 'mixed.lmdb') == ['cat', 'fox2']


def test_make_lmdb_recursive_keys_keep_the_folder_and_follow_links(tmp_path):
    write_images(tmp_path / 'sets' / 'LOL', {'1.png': (4, 4, 3)})
    write_images(tmp_path / 'sets' / 'VE', {'1.png': (6, 4, 3)})
    (tmp_path / 'low').mkdir()
    for name in ('LOL', 'VE'):
        (tmp_path / 'low' / name).symlink_to(tmp_path / 'sets' / name)
    with pytest.raises(dataprep.DataPrepError, match='no images'):
        dataprep.make_lmdb(tmp_path / 'low', tmp_path / 'flat.lmdb')
    assert dataprep.make_lmdb(tmp_path / 'low', tmp_path / 'low.lmdb', recursive=True) == ['LOL/1', 'VE/1']
    assert (tmp_path / 'low.lmdb' / 'meta_info.txt').read_text() == 'LOL/1.png (4,4,3) 1\nVE/1.png (6,4,3) 1\n'


def test_make_lmdb_refuses_existing_output_and_overwrite_replaces_its_own(tmp_path, capsys):
    write_images(tmp_path / 'one', {'a.png': (4, 4, 3)})
    write_images(tmp_path / 'two', {'b.png': (4, 4, 3), 'c.png': (4, 4, 3)})
    out = tmp_path / 'x.lmdb'
    assert run('make-lmdb', '--input', str(tmp_path / 'one'), '--output', str(out)) == 0
    capsys.readouterr()
    assert run('make-lmdb', '--input', str(tmp_path / 'two'), '--output', str(out)) == 2
    assert error_line(capsys) == (f'ramit make-lmdb: error: --output {out} already exists; pass --overwrite to '
                                  'replace it')
    assert (out / 'meta_info.txt').read_text() == 'a.png (4,4,3) 1\n'
    assert run('make-lmdb', '--input', str(tmp_path / 'two'), '--output', str(out), '--overwrite') == 0
    assert (out / 'meta_info.txt').read_text() == 'b.png (4,4,3) 1\nc.png (4,4,3) 1\n'
    assert leftovers(tmp_path) == []


def test_make_lmdb_failure_leaves_no_half_lmdb_and_keeps_the_old_one(tmp_path, capsys):
    write_images(tmp_path / 'in', {'a.png': (8, 8, 3), 'b.png': (8, 8, 3)})
    # A valid PNG header (size readable) with a corrupted body: decoding fails mid-way through the LMDB.
    png = (tmp_path / 'in' / 'b.png').read_bytes()
    (tmp_path / 'in' / 'b.png').write_bytes(png[:45] + b'\xff' * (len(png) - 57) + png[-12:])
    out = tmp_path / 'x.lmdb'
    assert run('make-lmdb', '--input', str(tmp_path / 'in'), '--output', str(out)) == 2
    assert error_line(capsys) == (f"ramit make-lmdb: error: {tmp_path / 'in' / 'b.png'}: cannot be read as an image "
                                  '(corrupt file or unsupported format)')
    assert not out.exists() and leftovers(tmp_path) == []
    write_images(tmp_path / 'good', {'g.png': (4, 4, 3)})
    assert run('make-lmdb', '--input', str(tmp_path / 'good'), '--output', str(out)) == 0
    assert run('make-lmdb', '--input', str(tmp_path / 'in'), '--output', str(out), '--overwrite',
               '--n-thread', '2') == 2
    assert (out / 'meta_info.txt').read_text() == 'g.png (4,4,3) 1\n'
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize('setup,message', [
    (lambda d: None, '--input {d}: no such folder'),
    (lambda d: d.mkdir(),
     '--input {d}: no images (.png, .jpg, .jpeg, .bmp, .tif, .tiff, .webp, .ppm, .pgm) in this folder'),
    (lambda d: write_images(d, {'a b.png': (4, 4, 3)}),
     "{d}/a b.png: 'a b' cannot be an LMDB key: BasicSR needs ASCII names without spaces or dots before the "
     'extension; rename the file'),
    (lambda d: write_images(d, {'a.png': (4, 4, 3), 'a.jpg': (4, 4, 3)}),
     "a.jpg and a.png in {d} both give the key 'a'"),
])
def test_make_lmdb_input_errors(tmp_path, capsys, setup, message):
    folder = tmp_path / 'in'
    setup(folder)
    assert run('make-lmdb', '--input', str(folder), '--output', str(tmp_path / 'x.lmdb')) == 2
    assert error_line(capsys) == 'ramit make-lmdb: error: ' + message.format(d=folder)
    assert not (tmp_path / 'x.lmdb').exists()


def test_make_lmdb_output_must_end_with_lmdb(tmp_path, capsys):
    write_images(tmp_path / 'in', {'a.png': (4, 4, 3)})
    assert run('make-lmdb', '--input', str(tmp_path / 'in'), '--output', str(tmp_path / 'x')) == 2
    assert "must end with '.lmdb'" in error_line(capsys)
    assert not (tmp_path / 'x').exists()


def test_relative_paths_and_basicsr_reads_the_lmdb_back(tmp_path, capsys, monkeypatch):
    write_images(tmp_path / 'in', {'a.png': (10, 12, 3)})
    monkeypatch.chdir(tmp_path)
    assert run('make-lmdb', '--input', 'in', '--output', 'x.lmdb') == 0
    assert 'ramit make-lmdb: wrote 1 images to x.lmdb' in capsys.readouterr().out
    from basicsr.data.data_util import paired_paths_from_lmdb
    pairs = paired_paths_from_lmdb([str(tmp_path / 'x.lmdb')] * 2, ['lq', 'gt'])
    assert pairs == [{'lq_path': 'a', 'gt_path': 'a'}]


# ------------------------------------------------------------------------------------------------------ make-lr
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_make_lr_equals_matlab_lr_of_set5(tmp_path, datasets_dir, scale):
    set5 = datasets_dir / 'Set5'
    out = tmp_path / f'X{scale}'
    assert dataprep.make_lr(set5 / 'HR', out, scale, n_thread=2) == 5
    shipped = sorted(p.name for p in (set5 / 'LR_bicubic' / f'X{scale}').glob('*.png'))
    assert listing(out) == shipped
    for name in shipped:
        # Bit-exact: MATLAB's uint8 intermediate between the row and column passes is reproduced.
        np.testing.assert_array_equal(read(out / name), read(set5 / 'LR_bicubic' / f'X{scale}' / name), err_msg=name)


def test_make_lr_mod_crop_names_hr_output_and_bit_depth(tmp_path, capsys):
    write_images(tmp_path / 'hr', {'rgb.png': (31, 22, 3), 'gray.png': (17, 13)})
    write_images(tmp_path / 'hr', {'deep.png': (9, 10, 3)}, dtype=np.uint16)
    assert run('make-lr', '--input', str(tmp_path / 'hr'), '--output', str(tmp_path / 'lr'), '--scale', '3',
               '--hr-output', str(tmp_path / 'hr_mod')) == 0
    assert capsys.readouterr().out.strip() == f"ramit make-lr: wrote 3 LR images x3 to {tmp_path / 'lr'}"
    assert listing(tmp_path / 'lr') == ['deepx3.png', 'grayx3.png', 'rgbx3.png']
    assert read(tmp_path / 'lr' / 'rgbx3.png').shape == (10, 7, 3)
    assert read(tmp_path / 'lr' / 'grayx3.png').shape == (5, 4)
    assert read(tmp_path / 'lr' / 'deepx3.png').dtype == np.uint16
    np.testing.assert_array_equal(read(tmp_path / 'hr_mod' / 'rgb.png'), read(tmp_path / 'hr' / 'rgb.png')[:30, :21])
    assert leftovers(tmp_path) == []


def test_bicubic_downscale_keeps_flat_images_flat_and_rounds_like_matlab():
    flat = np.full((12, 12, 3), 77, np.uint8)
    np.testing.assert_array_equal(dataprep.bicubic_downscale(flat, 2), np.full((6, 6, 3), 77, np.uint8))
    # The cubic kernel overshoots at a hard edge: values are clipped to the 8-bit range, not wrapped.
    edge = np.zeros((16, 16), np.uint8)
    edge[:, 8:] = 255
    out = dataprep.bicubic_downscale(edge, 2)
    assert out.min() == 0 and out.max() == 255 and out.shape == (8, 8)


def test_make_lr_errors(tmp_path, capsys):
    write_images(tmp_path / 'hr', {'tiny.png': (3, 8, 3)})
    assert run('make-lr', '--input', str(tmp_path / 'hr'), '--output', str(tmp_path / 'lr'), '--scale', '4') == 2
    assert error_line(capsys) == (f"ramit make-lr: error: {tmp_path / 'hr' / 'tiny.png'}: 8x3 is smaller than "
                                  '--scale 4')
    assert run('make-lr', '--input', str(tmp_path / 'hr'), '--output', str(tmp_path / 'lr'), '--scale', '1') == 2
    assert error_line(capsys) == 'ramit make-lr: error: --scale 1: must be an integer of at least 2'
    (tmp_path / 'lr').mkdir()
    assert run('make-lr', '--input', str(tmp_path / 'hr'), '--output', str(tmp_path / 'lr'), '--scale', '2') == 2
    assert 'already exists; pass --overwrite' in error_line(capsys)


def write_case_pair(folder: Path, names: Tuple[str, str]) -> None:
    """Two images ``names`` in ``folder``; skips where the file system cannot hold both (case-insensitive)."""
    write_images(folder, {names[0]: (8, 8, 3)})
    write_images(folder, {names[1]: (8, 8, 3)}, seed=1)
    if len(list(folder.iterdir())) != 2:
        pytest.skip(f'this file system does not keep {names[0]} and {names[1]} apart')


@pytest.mark.parametrize('names, hr_output, written_as', [
    (('a.png', 'a.jpg'), False, 'ax2.png'),  # the example
    (('a.png', 'a.PNG'), False, 'ax2.png'),  # one stem, the extension in another case
    (('a.png', 'a.jpg'), True, 'ax2.png'),
    (('a.tif', 'a.webp'), True, 'ax2.png'),
])
def test_make_lr_refuses_two_inputs_with_one_output_name(tmp_path, capsys, names, hr_output, written_as):
    """One LR (and mod-cropped HR) file per stem: a second image of the same stem would silently replace the first."""
    hr = tmp_path / 'hr'
    write_case_pair(hr, names)
    first, second = sorted(names)  # list_images sorts by name
    argv = ['make-lr', '--input', str(hr), '--output', str(tmp_path / 'lr'), '--scale', '2']
    if hr_output:
        argv += ['--hr-output', str(tmp_path / 'hr_mod')]
    before = tree(tmp_path)
    assert run(*argv) == 2
    assert error_line(capsys) == (f'ramit make-lr: error: {hr / first} and {hr / second} would both be written as '
                                  f'{written_as}; rename one of them')
    assert tree(tmp_path) == before and leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------- extract-subimages
@pytest.mark.parametrize('length,thresh,expected', [
    (250, 0, [0, 50, 100, 150]),
    (260, 0, [0, 50, 100, 150, 160]),  # 10 pixels left over: one more crop flush with the border
    (260, 10, [0, 50, 100, 150]),  # ... unless the leftover is within thresh_size
    (100, 0, [0]),
])
def test_crop_starts_follow_basicsr(length, thresh, expected):
    assert dataprep.crop_starts(length, 100, 50, thresh) == expected


def test_extract_subimages_names_sizes_and_content(tmp_path, capsys):
    hr = write_images(tmp_path / 'hr', {'0001.png': (250, 260, 3)})['0001.png']
    write_images(tmp_path / 'lr', {'0001x2.png': (125, 130, 3)})
    assert run('extract-subimages', '--input', str(tmp_path / 'hr'), '--output', str(tmp_path / 'hr_sub'),
               '--crop-size', '100', '--step', '50') == 0
    assert capsys.readouterr().out.strip() == f"ramit extract-subimages: wrote 20 sub-images to {tmp_path / 'hr_sub'}"
    names = listing(tmp_path / 'hr_sub')
    assert names == [f'0001_s{i:03d}.png' for i in range(1, 21)]
    # Row-major order: the 6th crop starts the second row (top 50, left 0); the 5th is flush right (left 160).
    np.testing.assert_array_equal(read(tmp_path / 'hr_sub' / '0001_s006.png'), hr[50:150, 0:100])
    np.testing.assert_array_equal(read(tmp_path / 'hr_sub' / '0001_s005.png'), hr[0:100, 160:260])
    # LR sub-images (crop and step divided by the scale) get the same names as the HR ones.
    assert dataprep.extract_subimages(tmp_path / 'lr', tmp_path / 'lr_sub', 50, 25) == 20
    assert listing(tmp_path / 'lr_sub') == names
    assert read(tmp_path / 'lr_sub' / '0001_s020.png').shape == (50, 50, 3)
    assert leftovers(tmp_path) == []


def test_extract_subimages_errors(tmp_path, capsys):
    write_images(tmp_path / 'hr', {'small.png': (90, 120, 3)})
    assert run('extract-subimages', '--input', str(tmp_path / 'hr'), '--output', str(tmp_path / 'sub'),
               '--crop-size', '100') == 2
    assert error_line(capsys) == (f"ramit extract-subimages: error: {tmp_path / 'hr' / 'small.png'}: 120x90 is "
                                  'smaller than --crop-size 100')
    assert run('extract-subimages', '--input', str(tmp_path / 'hr'), '--output', str(tmp_path / 'sub'),
               '--step', '0') == 2
    assert error_line(capsys) == 'ramit extract-subimages: error: --step 0: must be positive'
    assert not (tmp_path / 'sub').exists() and leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------- images as displayed
def write_rotated_jpeg(path: Path, orientation: int, height: int = 32, width: int = 64) -> np.ndarray:
    """A landscape JPEG (stored ``width`` x ``height``) whose EXIF says to display it turned by ``orientation``;
    returns the pixels as displayed, decoded by OpenCV's own reader (which applies the tag) as the reference."""
    rng = np.random.default_rng(orientation)
    # Smooth content, so JPEG keeps it recognisable; a gradient tells every turn and mirror apart.
    gradients = np.meshgrid(np.linspace(0, 255, width), np.linspace(0, 200, height))
    stored = np.stack([*gradients, rng.uniform(0, 255, (height, width))], axis=-1).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    shown = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert shown.shape[:2] == ((width, height) if orientation in (5, 6, 7, 8) else (height, width))
    return shown


@pytest.mark.parametrize('orientation', [6, 8])
def test_make_lr_gives_the_image_as_displayed(tmp_path, orientation):
    """A phone photo held upright is stored landscape with Orientation 6 (or 8): its LR image is portrait."""
    shown = write_rotated_jpeg(tmp_path / 'hr' / 'phone.jpg', orientation)
    assert run('make-lr', '--input', str(tmp_path / 'hr'), '--output', str(tmp_path / 'lr'), '--scale', '2',
               '--hr-output', str(tmp_path / 'hr_mod')) == 0
    lr = read(tmp_path / 'lr' / 'phonex2.png')
    assert lr.shape == (32, 16, 3)  # portrait, as the photo is shown
    np.testing.assert_array_equal(lr, dataprep.bicubic_downscale(shown, 2))
    np.testing.assert_array_equal(read(tmp_path / 'hr_mod' / 'phone.png'), shown)


@pytest.mark.parametrize('orientation', [6, 3])
def test_extract_subimages_and_make_lmdb_give_the_image_as_displayed(tmp_path, capsys, orientation):
    shown = write_rotated_jpeg(tmp_path / 'hr' / 'phone.jpg', orientation)
    height, width = shown.shape[:2]
    assert run('extract-subimages', '--input', str(tmp_path / 'hr'), '--output', str(tmp_path / 'sub'),
               '--crop-size', '32', '--step', '32') == 0
    crops = [(top, left) for top in range(0, height, 32) for left in range(0, width, 32)]
    assert listing(tmp_path / 'sub') == [f'phone_s{i:03d}.png' for i in range(1, len(crops) + 1)]
    for i, (top, left) in enumerate(crops, 1):
        np.testing.assert_array_equal(read(tmp_path / 'sub' / f'phone_s{i:03d}.png'),
                                      shown[top:top + 32, left:left + 32])
    assert run('make-lmdb', '--input', str(tmp_path / 'hr'), '--output', str(tmp_path / 'x.lmdb')) == 0
    # BasicSR's LmdbMaker names every value '<key>.png': the values are PNG-encoded pixels as displayed.
    assert (tmp_path / 'x.lmdb' / 'meta_info.txt').read_text() == f'phone.png ({height},{width},3) 1\n'
    client = FileClient('lmdb', db_paths=[str(tmp_path / 'x.lmdb')], client_keys=['gt'])
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(client.get('phone', 'gt'), np.uint8),
                                               cv2.IMREAD_UNCHANGED), shown)
    # The size checks see the displayed size too: a portrait photo is too narrow for a 48-pixel crop.
    if orientation == 6:
        assert run('extract-subimages', '--input', str(tmp_path / 'hr'), '--output', str(tmp_path / 'sub48'),
                   '--crop-size', '48') == 2
        assert error_line(capsys) == (f"ramit extract-subimages: error: {tmp_path / 'hr' / 'phone.jpg'}: 32x64 is "
                                      'smaller than --crop-size 48')


# ----------------------------------------------------------------------------------------- nothing else is lost
def refused(capsys, argv: List[str], root: Path, message: str) -> None:
    """``argv`` exits 2 with ``message`` as its one line, and nothing below ``root`` changed (byte for byte, and
    no folder came or went)."""
    before, folders = tree(root), sorted(root.rglob('*'))
    assert run(*argv) == 2
    assert error_line(capsys) == f'ramit {argv[0]}: error: {message}'
    assert tree(root) == before and sorted(root.rglob('*')) == folders


def not_replaced(option: str, output: Path, reason: str) -> str:
    """The message of an --overwrite that would delete what is not an earlier output of the command."""
    return (f'{option} {output}: not replaced: {reason}; --overwrite replaces only an earlier output, so nothing was '
            'changed: choose another folder or move them')


@pytest.mark.parametrize('argv, message', [
    # The output holds the input: --overwrite would replace the folder and the HR images (and notes.txt) with it.
    (['make-lr', '--input', '{p}/HR', '--output', '{p}', '--scale', '2', '--overwrite'],
     '--output {p} contains --input {p}/HR: replacing it would delete that; give a separate folder'),
    (['extract-subimages', '--input', '{p}/HR', '--output', '{p}/HR', '--crop-size', '8', '--step', '8',
      '--overwrite'], '--output {p}/HR is --input {p}/HR: replacing it would delete that; give a separate folder'),
    (['make-lr', '--input', '{p}/HR', '--output', '{p}/LR', '--hr-output', '{p}/HR', '--scale', '2', '--overwrite'],
     '--hr-output {p}/HR is --input {p}/HR: replacing it would delete that; give a separate folder'),
    (['make-lr', '--input', '{p}/HR', '--output', '{p}/out', '--hr-output', '{p}/out/HR', '--scale', '2'],
     '--output {p}/out contains --hr-output {p}/out/HR: replacing it would delete that; give a separate folder'),
])
def test_overwrite_never_replaces_an_input_or_another_output(argv, message, tmp_path, capsys):
    project = tmp_path / 'project'
    write_images(project / 'HR', {'a.png': (16, 16, 3), 'b.png': (16, 16, 3)})
    (project / 'notes.txt').write_text('my notes')
    refused(capsys, [a.format(p=project) for a in argv], tmp_path, message.format(p=project))
    assert not leftovers(project)


def basicsr_lmdb(folder: Path) -> None:
    """``folder`` as an LMDB written by BasicSR's own make_lmdb_from_imgs (not by ramit: it has no record)."""
    write_images(folder.with_suffix(''), {'0801.png': (128, 128, 3)})  # basicsr sizes the map by it
    make_lmdb_from_imgs(str(folder.with_suffix('')), str(folder), ['0801.png'], ['0801'], n_thread=1)


@pytest.mark.parametrize('command, output, fill', [
    # The examples: a folder of the user's photos given as --output with --overwrite.
    ('extract-subimages', 'photos', lambda d: write_images(d, {'IMG_0001.jpg': (40, 40, 3), 'IMG_0002.png': (9, 9)})),
    ('make-lr', 'holidays', lambda d: write_images(d, {'holiday.png': (16, 16, 3)})),
    ('make-lmdb', 'mine.lmdb', lambda d: (d.mkdir(), (d / 'data.mdb').write_bytes(b'my database'))),
    # Variants: an LMDB BasicSR's own script wrote (ours or not is what counts, not what it looks like), photos
    # only in a sub-folder, a folder that holds nothing but an empty sub-folder.
    ('make-lmdb', 'DIV2K.lmdb', basicsr_lmdb),
    ('make-lr', 'camera', lambda d: write_images(d / '2024' / 'DCIM', {'IMG_0001.jpg': (16, 16, 3)})),
    ('extract-subimages', 'empty', lambda d: (d / 'keep').mkdir(parents=True)),
])
def test_overwrite_never_deletes_the_users_folder(tmp_path, capsys, command, output, fill):
    write_images(tmp_path / 'hr', {'a.png': (32, 32, 3)})
    fill(tmp_path / output)
    extra = {'make-lr': ['--scale', '2'], 'extract-subimages': ['--crop-size', '32', '--step', '32']}.get(command, [])
    refused(capsys, [command, '--input', str(tmp_path / 'hr'), '--output', str(tmp_path / output), *extra,
                     '--overwrite'], tmp_path,
            not_replaced('--output', tmp_path / output, f'it was not written by ramit {command} (no {RECORD} listing '
                                                        'its files)'))
    assert (tmp_path / output).is_dir() and leftovers(tmp_path) == []


# The three commands writing ``out`` from ``hr`` (a folder of 32x32 images).
COMMANDS = {
    'make-lr': lambda hr, out: ['make-lr', '--input', str(hr), '--output', str(out), '--scale', '2'],
    'extract-subimages': lambda hr, out: ['extract-subimages', '--input', str(hr), '--output', str(out),
                                          '--crop-size', '16', '--step', '16'],
    'make-lmdb': lambda hr, out: ['make-lmdb', '--input', str(hr), '--output', str(out)],
}


def recorded(folder: Path) -> dict:
    """The output record of ``folder``."""
    return json.loads((folder / RECORD).read_text())


@pytest.mark.parametrize('command', COMMANDS)
def test_overwrite_replaces_an_earlier_output_of_the_same_command(tmp_path, capsys, command):
    write_images(tmp_path / 'one', {'a.png': (32, 32, 3), 'b.png': (32, 32, 3)})
    write_images(tmp_path / 'two', {'c.png': (32, 32, 3)})
    out = tmp_path / 'out.lmdb'
    assert run(*COMMANDS[command](tmp_path / 'one', out)) == 0
    # The record lists exactly the files the command wrote.
    assert recorded(out) == {'command': command, 'files': listing(out)} and len(listing(out)) >= 2
    # Files of the earlier output the user deleted do not stop a replacement.
    (out / listing(out)[0]).unlink()
    assert run(*COMMANDS[command](tmp_path / 'two', out), '--overwrite') == 0
    assert recorded(out) == {'command': command, 'files': listing(out)}
    # Now the output is what the command writes from 'two' into a new folder.
    assert run(*COMMANDS[command](tmp_path / 'two', tmp_path / 'fresh.lmdb')) == 0
    assert listing(out) == listing(tmp_path / 'fresh.lmdb')
    for name in ('meta_info.txt', 'cx2.png', 'c_s001.png'):
        assert (out / name).is_file() == (tmp_path / 'fresh.lmdb' / name).is_file()
        if (out / name).is_file():
            assert (out / name).read_bytes() == (tmp_path / 'fresh.lmdb' / name).read_bytes()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize('first, second', [
    ('make-lr', 'extract-subimages'),  # the example
    ('extract-subimages', 'make-lr'),
    ('make-lmdb', 'make-lr'),
])
def test_overwrite_refuses_the_output_of_another_command(tmp_path, capsys, first, second):
    """Another command's output is an input of the user's next step (LR images, sub-images), not a scratch folder."""
    write_images(tmp_path / 'hr', {'a.png': (32, 32, 3)})
    out = tmp_path / 'step.lmdb'
    assert run(*COMMANDS[first](tmp_path / 'hr', out)) == 0
    capsys.readouterr()
    refused(capsys, [*COMMANDS[second](tmp_path / 'hr', out), '--overwrite'], tmp_path,
            not_replaced('--output', out, f'it is the output of ramit {first}, not of ramit {second}'))


@pytest.mark.parametrize('command, dropped', [
    ('make-lr', 'holiday.png'),  # the example: one extra file in an earlier output
    ('make-lmdb', 'backup/data.mdb'),  # a variant: a file in a sub-folder of an earlier LMDB
    ('extract-subimages', 'a_s001.png.orig'),  # a variant: a name beside the outputs, not an image name
])
def test_overwrite_refuses_an_earlier_output_the_user_added_to(tmp_path, capsys, command, dropped):
    write_images(tmp_path / 'hr', {'a.png': (32, 32, 3)})
    out = tmp_path / 'out.lmdb'
    assert run(*COMMANDS[command](tmp_path / 'hr', out)) == 0
    capsys.readouterr()
    (out / dropped).parent.mkdir(exist_ok=True)
    (out / dropped).write_bytes(b'the user put this here')
    refused(capsys, [*COMMANDS[command](tmp_path / 'hr', out), '--overwrite'], tmp_path,
            not_replaced('--output', out, f'it holds files ramit {command} did not write ({dropped})'))


def test_unwritable_output_and_full_disk_are_one_line(tmp_path, capsys, monkeypatch):
    write_images(tmp_path / 'HR', {'a.png': (16, 16, 3)})
    (tmp_path / 'file').write_text('a file, not a folder')
    assert run('make-lmdb', '--input', str(tmp_path / 'HR'), '--output', str(tmp_path / 'file' / 'x.lmdb')) == 2
    assert error_line(capsys) == (f"ramit make-lmdb: error: {tmp_path / 'file'}: cannot be created as a folder: a "
                                  'file of that name is in the way')

    def disk_full(self, *args):
        raise lmdb.DiskError('mdb_put: No space left on device')

    monkeypatch.setattr(dataprep.LmdbMaker, 'put', disk_full)
    assert run('make-lmdb', '--input', str(tmp_path / 'HR'), '--output', str(tmp_path / 'x.lmdb')) == 1
    assert error_line(capsys) == (f"ramit make-lmdb: error: {tmp_path / 'x.lmdb'}: cannot be written (No space left "
                                  'on device); nothing was left half-written')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['HR', 'file']
