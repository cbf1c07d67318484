"""`ramit make-lmdb`, `make-lr` and `extract-subimages`: BasicSR-compatible outputs, MATLAB-exact LR, safe writes."""
import os
import subprocess
import sys
from pathlib import Path

import cv2
import lmdb
import numpy as np
import pytest

import ramit_plugin  # noqa: F401  (torchvision shim before basicsr)
from basicsr.utils import FileClient
from ramit_plugin.cli import data_prep
from ramit_cli.main import main


def write_images(folder: Path, shapes: dict, dtype=np.uint8, seed: int = 0) -> dict:
    """PNG files `name -> shape` of random content in `folder`; returns name -> array."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = {}
    for name, shape in shapes.items():
        img = rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)
        cv2.imwrite(str(folder / name), img)
        images[name] = img
    return images


def run(*argv: str) -> int:
    """Run a `ramit` command in-process."""
    return main(list(argv), prog='ramit')


def error_line(capsys) -> str:
    """The one-line error a command printed on stderr (progress bars share stderr)."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith('ramit ')]
    assert len(lines) == 1, lines
    return lines[0]


def leftovers(folder: Path) -> list:
    """Hidden staging folders a command left behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith('.'))


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
    assert data_prep.make_lmdb(tmp_path / 'lr', tmp_path / 'lr.lmdb') == ['baby', 'bird']
    assert data_prep.make_lmdb(tmp_path / 'lr', tmp_path / 'keep.lmdb', strip_scale_suffix=False) == [
        'babyx2', 'birdx2']
    with lmdb.open(str(tmp_path / 'lr.lmdb'), readonly=True, lock=False) as env, env.begin() as txn:
        assert sorted(k.decode() for k, _ in txn.cursor()) == ['baby', 'bird']
    # Mixed names are not an LR folder: nothing is stripped.
    write_images(tmp_path / 'mixed', {'fox2.png': (4, 4, 3), 'cat.png': (4, 4, 3)})
    assert data_prep.make_lmdb(tmp_path / 'mixed', tmp_path / 'mixed.lmdb') == ['cat', 'fox2']


def test_make_lmdb_recursive_keys_keep_the_folder_and_follow_links(tmp_path):
    write_images(tmp_path / 'sets' / 'LOL', {'1.png': (4, 4, 3)})
    write_images(tmp_path / 'sets' / 'VE', {'1.png': (6, 4, 3)})
    (tmp_path / 'low').mkdir()
    for name in ('LOL', 'VE'):
        (tmp_path / 'low' / name).symlink_to(tmp_path / 'sets' / name)
    with pytest.raises(data_prep.DataPrepError, match='no images'):
        data_prep.make_lmdb(tmp_path / 'low', tmp_path / 'flat.lmdb')
    assert data_prep.make_lmdb(tmp_path / 'low', tmp_path / 'low.lmdb', recursive=True) == ['LOL/1', 'VE/1']
    assert (tmp_path / 'low.lmdb' / 'meta_info.txt').read_text() == 'LOL/1.png (4,4,3) 1\nVE/1.png (6,4,3) 1\n'


def test_make_lmdb_refuses_existing_output_and_overwrite_replaces_it(tmp_path, capsys):
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
    assert run('make-lmdb', '--input', str(tmp_path / 'in'), '--output', str(out), '--n-thread', '1') == 2
    assert error_line(capsys) == (f"ramit make-lmdb: error: {tmp_path / 'in' / 'b.png'}: cannot be "
                                               'read as an image')
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
    assert "must end with '.lmdb'" in capsys.readouterr().err


def test_console_script_reads_the_lmdb_back_through_basicsr(tmp_path):
    write_images(tmp_path / 'in', {'a.png': (10, 12, 3)})
    proc = subprocess.run([sys.executable, '-m', 'ramit_cli', 'make-lmdb', '--input', 'in',
                           '--output', 'x.lmdb'], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr
    assert 'ramit make-lmdb: wrote 1 images to x.lmdb' in proc.stdout
    from basicsr.data.data_util import paired_paths_from_lmdb
    assert paired_paths_from_lmdb([str(tmp_path / 'x.lmdb')] * 2, ['lq', 'gt']) == [{'lq_path': 'a',
                                                                                       'gt_path': 'a'}]


# ------------------------------------------------------------------------------------------------------ make-lr
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_make_lr_equals_matlab_lr_of_set5(tmp_path, datasets_dir, scale):
    set5 = datasets_dir / 'Set5'
    out = tmp_path / f'X{scale}'
    assert data_prep.make_lr(set5 / 'HR', out, scale, n_thread=2) == 5
    shipped = sorted(p.name for p in (set5 / 'LR_bicubic' / f'X{scale}').glob('*.png'))
    assert sorted(p.name for p in out.iterdir()) == shipped
    for name in shipped:
        ref = cv2.imread(str(set5 / 'LR_bicubic' / f'X{scale}' / name), cv2.IMREAD_UNCHANGED)
        # Bit-exact: MATLAB's uint8 intermediate between the row and column passes is reproduced.
        np.testing.assert_array_equal(cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED), ref, err_msg=name)


def test_make_lr_mod_crop_names_hr_output_and_bit_depth(tmp_path, capsys):
    write_images(tmp_path / 'hr', {'rgb.png': (31, 22, 3), 'gray.png': (17, 13)})
    write_images(tmp_path / 'hr', {'deep.png': (9, 10, 3)}, dtype=np.uint16)
    assert run('make-lr', '--input', str(tmp_path / 'hr'), '--output', str(tmp_path / 'lr'), '--scale', '3',
               '--hr-output', str(tmp_path / 'hr_mod')) == 0
    assert capsys.readouterr().out.strip() == f"ramit make-lr: wrote 3 LR images x3 to {tmp_path / 'lr'}"
    read = lambda p: cv2.imread(str(p), cv2.IMREAD_UNCHANGED)  # noqa: E731
    assert sorted(p.name for p in (tmp_path / 'lr').iterdir()) == ['deepx3.png', 'grayx3.png', 'rgbx3.png']
    assert read(tmp_path / 'lr' / 'rgbx3.png').shape == (10, 7, 3)
    assert read(tmp_path / 'lr' / 'grayx3.png').shape == (5, 4)
    assert read(tmp_path / 'lr' / 'deepx3.png').dtype == np.uint16
    np.testing.assert_array_equal(read(tmp_path / 'hr_mod' / 'rgb.png'), read(tmp_path / 'hr' / 'rgb.png')[:30, :21])
    assert leftovers(tmp_path) == []


def test_bicubic_downscale_keeps_flat_images_flat_and_rounds_like_matlab():
    flat = np.full((12, 12, 3), 77, np.uint8)
    np.testing.assert_array_equal(data_prep.bicubic_downscale(flat, 2), np.full((6, 6, 3), 77, np.uint8))
    # The cubic kernel overshoots at a hard edge: values are clipped to the 8-bit range, not wrapped.
    edge = np.zeros((16, 16), np.uint8)
    edge[:, 8:] = 255
    out = data_prep.bicubic_downscale(edge, 2)
    assert out.min() == 0 and out.max() == 255 and out.shape == (8, 8)


def test_make_lr_errors(tmp_path, capsys):
    write_images(tmp_path / 'hr', {'tiny.png': (3, 8, 3)})
    assert run('make-lr', '--input', str(tmp_path / 'hr'), '--output', str(tmp_path / 'lr'), '--scale', '4') == 2
    assert error_line(capsys) == (f"ramit make-lr: error: {tmp_path / 'hr' / 'tiny.png'}: 8x3 is "
                                               'smaller than --scale 4')
    assert run('make-lr', '--input', str(tmp_path / 'hr'), '--output', str(tmp_path / 'lr'), '--scale', '1') == 2
    assert 'error: --scale 1: must be an integer of at least 2' in capsys.readouterr().err
    (tmp_path / 'lr').mkdir()
    assert run('make-lr', '--input', str(tmp_path / 'hr'), '--output', str(tmp_path / 'lr'), '--scale', '2') == 2
    assert 'already exists; pass --overwrite' in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- extract-subimages
@pytest.mark.parametrize('length,thresh,expected', [
    (250, 0, [0, 50, 100, 150]),
    (260, 0, [0, 50, 100, 150, 160]),  # 10 pixels left over: one more crop flush with the border
    (260, 10, [0, 50, 100, 150]),  # ... unless the leftover is within thresh_size
    (100, 0, [0]),
])
def test_crop_starts_follow_basicsr(length, thresh, expected):
    assert data_prep.crop_starts(length, 100, 50, thresh) == expected


def test_extract_subimages_names_sizes_and_content(tmp_path, capsys):
    hr = write_images(tmp_path / 'hr', {'0001.png': (250, 260, 3)})['0001.png']
    write_images(tmp_path / 'lr', {'0001x2.png': (125, 130, 3)})
    assert run('extract-subimages', '--input', str(tmp_path / 'hr'), '--output', str(tmp_path / 'hr_sub'),
               '--crop-size', '100', '--step', '50', '--n-thread', '2') == 0
    assert capsys.readouterr().out.strip() == f"ramit extract-subimages: wrote 20 sub-images to {tmp_path / 'hr_sub'}"
    names = sorted(p.name for p in (tmp_path / 'hr_sub').iterdir())
    assert names == [f'0001_s{i:03d}.png' for i in range(1, 21)]
    # Row-major order: the 6th crop starts the second row (top 50, left 0); the 5th is flush right (left 160).
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / 'hr_sub' / '0001_s006.png')), hr[50:150, 0:100])
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / 'hr_sub' / '0001_s005.png')), hr[0:100, 160:260])
    # LR sub-images (crop and step divided by the scale) get the same names as the HR ones.
    assert data_prep.extract_subimages(tmp_path / 'lr', tmp_path / 'lr_sub', 50, 25) == 20
    assert sorted(p.name for p in (tmp_path / 'lr_sub').iterdir()) == names
    assert cv2.imread(str(tmp_path / 'lr_sub' / '0001_s020.png')).shape == (50, 50, 3)
    assert leftovers(tmp_path) == []


def test_extract_subimages_errors(tmp_path, capsys):
    write_images(tmp_path / 'hr', {'small.png': (90, 120, 3)})
    assert run('extract-subimages', '--input', str(tmp_path / 'hr'), '--output', str(tmp_path / 'sub'),
               '--crop-size', '100') == 2
    assert error_line(capsys) == (f"ramit extract-subimages: error: {tmp_path / 'hr' / 'small.png'}: "
                                               '120x90 is smaller than --crop-size 100')
    assert run('extract-subimages', '--input', str(tmp_path / 'hr'), '--output', str(tmp_path / 'sub'),
               '--step', '0') == 2
    assert 'error: --step 0: must be positive' in capsys.readouterr().err
    assert not (tmp_path / 'sub').exists() and leftovers(tmp_path) == []


# ----------------------------------------------------------------------------------------- nothing else is lost
def tree(folder: Path) -> dict:
    """Relative path -> bytes of every file below ``folder``."""
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob('*') if p.is_file()}


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
    # An existing output with files the command does not write: --overwrite would delete them.
    (['make-lr', '--input', '{p}/HR', '--output', '{p}/LR', '--scale', '2', '--overwrite'],
     '--output {p}/LR holds what this command does not write (notes.txt); --overwrite replaces only an earlier output, '
     'so nothing was changed: choose another folder or move them'),
    (['make-lmdb', '--input', '{p}/HR', '--output', '{p}/old.lmdb', '--overwrite'],
     '--output {p}/old.lmdb holds what this command does not write (backup/, notes.txt); --overwrite replaces only '
     'an earlier output, so nothing was changed: choose another folder or move them'),
])
def test_overwrite_never_deletes_inputs_or_foreign_files(argv, message, tmp_path, capsys):
    project = tmp_path / 'project'
    write_images(project / 'HR', {'a.png': (16, 16, 3), 'b.png': (16, 16, 3)})
    (project / 'notes.txt').write_text('my notes')
    write_images(project / 'LR', {'ax2.png': (8, 8, 3)})
    (project / 'LR' / 'notes.txt').write_text('LR notes')
    (project / 'old.lmdb' / 'backup').mkdir(parents=True)
    (project / 'old.lmdb' / 'notes.txt').write_text('lmdb notes')
    before = tree(tmp_path)
    assert run(*[a.format(p=project) for a in argv]) == 2
    assert error_line(capsys) == f'ramit {argv[0]}: error: ' + message.format(p=project)
    assert tree(tmp_path) == before and not leftovers(project)


def test_overwrite_replaces_an_earlier_output(tmp_path, capsys):
    write_images(tmp_path / 'HR', {'a.png': (16, 16, 3)})
    assert run('make-lr', '--input', str(tmp_path / 'HR'), '--output', str(tmp_path / 'LR'), '--scale', '2') == 0
    (tmp_path / 'LR' / 'old.png').write_bytes((tmp_path / 'LR' / 'ax2.png').read_bytes())
    assert run('make-lr', '--input', str(tmp_path / 'HR'), '--output', str(tmp_path / 'LR'), '--scale', '2',
               '--overwrite') == 0
    assert sorted(p.name for p in (tmp_path / 'LR').iterdir()) == ['ax2.png']


def test_unwritable_output_and_full_disk_are_one_line(tmp_path, capsys, monkeypatch):
    write_images(tmp_path / 'HR', {'a.png': (16, 16, 3)})
    (tmp_path / 'file').write_text('a file, not a folder')
    assert run('make-lmdb', '--input', str(tmp_path / 'HR'), '--output', str(tmp_path / 'file' / 'x.lmdb')) == 2
    assert error_line(capsys) == (f"ramit make-lmdb: error: {tmp_path / 'file'}: cannot be created as a folder: a "
                                  'file of that name is in the way')

    def disk_full(self, *args):
        raise lmdb.DiskError('mdb_put: No space left on device')

    monkeypatch.setattr(data_prep.LmdbMaker, 'put', disk_full)
    assert run('make-lmdb', '--input', str(tmp_path / 'HR'), '--output', str(tmp_path / 'x.lmdb')) == 1
    assert error_line(capsys) == (f"ramit make-lmdb: error: {tmp_path / 'x.lmdb'}: cannot be written (No space left "
                                  'on device); nothing was left half-written')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['HR', 'file']
