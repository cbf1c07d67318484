"""Image files: EXIF orientation applied as viewers display it, headers that report the displayed size, PNG outputs
that name their writer, and the one-line errors of input lists (missing files, dangling links, pipes)."""
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo

from ramit.errors import OptionError
from ramit.images import (EXIF_ORIENTATION, ImageFileError, broken_links, decode, encode_png, expand_inputs,
                          read_header, read_image, written_by)
from ramit.inference import WRITER

# 48 x 32 pixels of 16 x 16 blocks in six clearly different colours: every orientation gives another arrangement,
# and JPEG (blocks aligned to its 8 x 8 grid, quality 100, no chroma subsampling) keeps the colours within a few
# levels.
BLOCKS = np.array([[[230, 20, 20], [20, 230, 20]],
                   [[20, 20, 230], [230, 230, 20]],
                   [[20, 230, 230], [130, 60, 200]]], np.uint8)
PATTERN = BLOCKS.repeat(16, axis=0).repeat(16, axis=1)  # RGB [48, 32, 3]


def with_orientation(path: Path, orientation: int) -> Path:
    """Write PATTERN to ``path`` (JPEG or PNG, by its suffix) with Pillow, carrying EXIF ``orientation``."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    options = dict(quality=100, subsampling=0) if path.suffix == '.jpg' else {}
    Image.fromarray(PATTERN).save(path, exif=exif, **options)
    return path


@pytest.mark.parametrize('suffix', ['.jpg', '.png'])
@pytest.mark.parametrize('orientation', range(1, 9))
def test_exif_orientation_decodes_as_displayed(tmp_path, suffix, orientation):
    path = with_orientation(tmp_path / f'photo{suffix}', orientation)
    with Image.open(path) as img:
        assert img.getexif()[EXIF_ORIENTATION] == orientation  # the tag really is in the file
        displayed = np.asarray(ImageOps.exif_transpose(img).convert('RGB'))
    ours = decode(path)[:, :, ::-1]  # BGR -> RGB
    assert ours.shape == displayed.shape == ((48, 32, 3) if orientation <= 4 else (32, 48, 3))
    tolerance = 4 if suffix == '.jpg' else 0  # two JPEG decoders (libjpeg-turbo in OpenCV and in Pillow)
    assert np.abs(ours.astype(int) - displayed.astype(int)).max() <= tolerance
    assert read_image(path).rgb.shape == ours.shape  # what the network sees
    header = read_header(path)
    assert (header.height, header.width, header.orientation) == (*displayed.shape[:2], orientation)
    assert (header.channels, header.bytes_per_sample, header.frames) == (3, 1, 1)


def test_a_file_that_is_not_an_image_is_one_line(tmp_path):
    path = tmp_path / 'notes.png'
    path.write_text('not an image')
    with pytest.raises(ImageFileError, match=f'^{path}: cannot be read as an image'):
        read_header(path)
    with pytest.raises(ImageFileError, match=rf'^{path}: cannot be read as an image \(corrupt file or unsupported'):
        decode(path)


@pytest.mark.parametrize('alpha, max_value', [(False, 255), (True, 255), (False, 65535)])
def test_encoded_pngs_name_their_writer_and_keep_the_pixels(tmp_path, alpha, max_value):
    rng = np.random.default_rng(0)
    rgb = rng.random((9, 13, 3), dtype=np.float32) * 1.2 - 0.1  # outside [0, 1] too: clipped
    a = rng.random((9, 13), dtype=np.float32) if alpha else None
    expected = np.rint(np.clip(rgb, 0, 1) * max_value)
    path = tmp_path / 'out.png'
    path.write_bytes(encode_png(rgb.copy(), None if a is None else a.copy(), max_value, WRITER))
    assert WRITER == 'ramit infer' and written_by(path) == 'ramit infer'
    stored = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert stored.dtype == (np.uint8 if max_value == 255 else np.uint16)
    assert np.array_equal(stored[:, :, 2::-1], expected)  # BGR(A) on disk
    if alpha:
        assert np.array_equal(stored[:, :, 3], np.rint(a * max_value))
    loaded = read_image(path)
    assert loaded.max_value == max_value and (loaded.alpha is not None) == alpha and not loaded.gray


def text_chunk(key: str, value: str) -> PngInfo:
    """A Pillow PngInfo with one text chunk."""
    info = PngInfo()
    info.add_text(key, value)
    return info


def test_written_by_is_none_for_files_ramit_did_not_write(tmp_path):
    cv2.imwrite(str(tmp_path / 'plain.png'), PATTERN)
    assert written_by(tmp_path / 'plain.png') is None
    Image.fromarray(PATTERN).save(tmp_path / 'other.png', pnginfo=text_chunk('Software', 'GIMP'))
    assert written_by(tmp_path / 'other.png') == 'GIMP'
    cv2.imwrite(str(tmp_path / 'photo.jpg'), PATTERN)
    assert written_by(tmp_path / 'photo.jpg') is None
    (tmp_path / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n')
    assert written_by(tmp_path / 'broken.png') is None
    assert written_by(tmp_path / 'missing.png') is None


def test_expand_inputs_lists_files_folders_and_globs_once_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path('in').mkdir()
    for name in ('b.png', 'a.jpg'):
        cv2.imwrite(f'in/{name}', PATTERN)
    Path('in/notes.txt').write_text('not an image')
    assert expand_inputs(['in/b.png', 'in', 'in/*.jpg']) == [Path('in/b.png'), Path('in/a.jpg')]
    Path('empty').mkdir()
    with pytest.raises(OptionError, match=r'^-i empty: no images \(\.png, \.jpg'):
        expand_inputs(['empty'])


@pytest.mark.skipif(not hasattr(os, 'mkfifo'), reason='needs symbolic links and named pipes (POSIX)')
def test_expand_inputs_names_missing_files_dangling_links_and_pipes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cv2.imwrite('ok.png', PATTERN)
    with pytest.raises(OptionError) as err:
        expand_inputs(['ok.png', 'gone.png'])
    assert str(err.value) == '-i gone.png: no such file, folder or matching images'
    os.symlink('/nowhere/photo.png', 'link.png')
    with pytest.raises(OptionError) as err:
        expand_inputs(['link.png'])
    assert str(err.value) == '-i link.png: a link to /nowhere/photo.png, which does not exist'
    os.mkfifo('pipe.png')
    with pytest.raises(OptionError) as err:
        expand_inputs(['pipe.png'])  # would block forever if it were opened
    assert str(err.value) == '-i pipe.png: not a regular file (a pipe or device); give image files'


@pytest.mark.skipif(not hasattr(os, 'symlink'), reason='needs symbolic links')
def test_broken_links_are_the_dangling_image_links_of_a_folder(tmp_path):
    cv2.imwrite(str(tmp_path / 'a.png'), PATTERN)
    os.symlink(tmp_path / 'a.png', tmp_path / 'good.png')
    os.symlink(tmp_path / 'missing.png', tmp_path / 'b.png')
    os.symlink(tmp_path / 'missing.txt', tmp_path / 'c.txt')  # not an image name: not reported
    assert broken_links(tmp_path) == [tmp_path / 'b.png']
