"""Image files on disk: which names are images, listing folders, sizes from headers, decoding, meta_info.txt, LMDBs.

One description of image files for the option checks, the data preparation commands, the datasets and
`ramit infer`.
"""
import os
import re
from pathlib import Path
from typing import Iterable, List, NamedTuple, Optional, Tuple, Union

import numpy as np

from .errors import RamitError

PathLike = Union[str, os.PathLike]
# What both OpenCV (imdecode) and Pillow (headers) read; anything else in a folder (READMEs, meta_info.txt) is skipped.
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
# basicsr's meta_info line: 'name.png (h,w,c) compression'; folder meta_info files may give the name only.
META_INFO_LINE = re.compile(r'\s*(\S+)(?:\s+\((\d+),\s*(\d+)[,)])?')


class ImageFileError(RamitError, ValueError):
    """A file that cannot be read as an image; the message names it."""


class LmdbError(RamitError, ValueError):
    """An LMDB folder that is damaged or does not hold the keys its meta_info lists; the message names it."""


class ImageHeader(NamedTuple):
    """Size and sample layout of an image, read from its header only (no decoding)."""

    path: Path
    height: int
    width: int
    channels: int
    bytes_per_sample: int
    frames: int = 1  # an animated PNG/WebP or a multi-page TIFF has more; OpenCV decodes the first


class MetaInfoEntry(NamedTuple):
    """One line of a meta_info file: its number, the image name and (height, width) when given."""

    line: int
    name: str
    size: Optional[Tuple[int, int]]


def is_image_name(name: PathLike) -> bool:
    """Whether a file name has one of IMAGE_EXTENSIONS (case-insensitive)."""
    return os.fspath(name).lower().endswith(IMAGE_EXTENSIONS)


def list_images(folder: PathLike, recursive: bool = False) -> List[Path]:
    """Image files in an existing ``folder`` (and below it if ``recursive``, following links), sorted."""
    folder = Path(folder)
    # os.walk, unlike Path.rglob before Python 3.13, follows links to folders (one link per training set).
    found = ((Path(top) / name for top, _, names in os.walk(folder, followlinks=True) for name in names)
             if recursive else folder.iterdir())
    return sorted(p for p in found if is_image_name(p.name) and p.is_file())


def read_header(path: PathLike) -> ImageHeader:
    """Image size and sample layout from the file header (Pillow, no decoding); ImageFileError if not an image."""
    from PIL import Image, UnidentifiedImageError

    # Only the header is read, so Pillow's decompression-bomb limit (~179M pixels) does not apply: large images are
    # what tiled inference is for, and decode() reports what OpenCV will not decode.
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(path) as img:
            mode, (width, height), bands = img.mode, img.size, len(img.getbands())
            frames = getattr(img, 'n_frames', 1)
    except (OSError, UnidentifiedImageError) as exc:
        raise ImageFileError(f'{path}: cannot be read as an image ({exc})') from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    # OpenCV expands palette images to BGR(A); 16-bit PNG and TIFF keep two bytes per sample.
    channels = 4 if mode == 'P' else bands
    bytes_per_sample = 4 if mode in ('I', 'F') else 2 if '16' in mode else 1
    return ImageHeader(Path(path), height, width, channels, bytes_per_sample, frames)


def decode(path: PathLike) -> np.ndarray:
    """The image as stored (OpenCV IMREAD_UNCHANGED: bit depth, channels and alpha kept, BGR order)."""
    import cv2

    # np.fromfile + imdecode, unlike cv2.imread, reads any file name the OS accepts.
    data = np.fromfile(os.fspath(path), dtype=np.uint8)
    try:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except cv2.error as err:  # e.g. a header claiming more pixels than OpenCV decodes
        reason = ('more pixels than OpenCV decodes (CV_IO_MAX_IMAGE_PIXELS, 2^30 by default)'
                  if 'CV_IO_MAX_IMAGE_PIXELS' in str(err) else str(err).strip().splitlines()[-1])
        raise ImageFileError(f'{path}: cannot be decoded: {reason}') from None
    if img is None:
        raise ImageFileError(f'{path}: cannot be read as an image (corrupt file or unsupported format)')
    return img


def read_meta_info(path: PathLike) -> List[MetaInfoEntry]:
    """The non-empty lines of a basicsr meta_info file ('name (h,w,c) compression', or just 'name')."""
    entries = []
    with open(path, encoding='utf-8') as f:
        for number, text in enumerate(f, 1):
            if not text.strip():
                continue
            match = META_INFO_LINE.match(text)
            size = (int(match.group(2)), int(match.group(3))) if match.group(2) else None
            entries.append(MetaInfoEntry(number, match.group(1), size))
    return entries


def check_lmdb(root: PathLike, keys: Iterable[str], meta_info: PathLike) -> None:
    """LmdbError unless ``root``'s data.mdb is complete and holds every key ``meta_info`` lists (``keys``).

    Reading a truncated data.mdb kills the process with SIGBUS (LMDB maps the file into memory), so its size is
    compared with the pages the database says it uses (its meta pages, read without mapping) before any key is read.
    """
    import lmdb

    data = os.path.join(os.fspath(root), 'data.mdb')
    if not os.path.isfile(data):
        raise LmdbError(f'{data} is missing: not a complete LMDB (create it with `ramit make-lmdb`)')
    size = os.path.getsize(data)
    if size == 0:
        raise LmdbError(f'{data} is empty (0 bytes): recreate the LMDB with `ramit make-lmdb`')
    try:
        env = lmdb.open(os.fspath(root), readonly=True, lock=False, readahead=False, meminit=False)
    except lmdb.Error as err:
        if 'already open' in str(err):  # py-lmdb opens a database once per process: it was checked and is read
            return
        raise LmdbError(f'{data}: not a readable LMDB ({err}); recreate it with `ramit make-lmdb`') from None
    try:
        used = (env.info()['last_pgno'] + 1) * env.stat()['psize']
        if size < used:
            raise LmdbError(f'{data} is truncated: {size} bytes, but the database uses {used} (an interrupted copy '
                            'or download?); copy or recreate it')
        with env.begin() as txn, txn.cursor() as cursor:
            # set_key finds a key without reading its value (txn.get would read every image).
            missing = [key for key in keys if not cursor.set_key(key.encode())]
    finally:
        env.close()
    if missing:
        raise LmdbError(f'{meta_info} lists {len(missing)} key(s) that {root} does not hold, e.g. '
                        + ', '.join(missing[:5]))
