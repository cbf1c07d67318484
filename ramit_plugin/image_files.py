"""Image files on disk: which names are images, listing folders, sizes from headers, decoding, meta_info.txt.

One description of image files for the option checks, the data preparation commands, the datasets and
`ramit infer`.
"""
import os
import re
from pathlib import Path
from typing import List, NamedTuple, Optional, Tuple, Union

import numpy as np

from .errors import RamitError

PathLike = Union[str, os.PathLike]
# What both OpenCV (imdecode) and Pillow (headers) read; anything else in a folder (READMEs, meta_info.txt) is skipped.
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
# basicsr's meta_info line: 'name.png (h,w,c) compression'; folder meta_info files may give the name only.
META_INFO_LINE = re.compile(r'\s*(\S+)(?:\s+\((\d+),\s*(\d+)[,)])?')


class ImageFileError(RamitError, ValueError):
    """A file that cannot be read as an image; the message names it."""


class ImageHeader(NamedTuple):
    """Size and sample layout of an image, read from its header only (no decoding)."""

    path: Path
    height: int
    width: int
    channels: int
    bytes_per_sample: int


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

    try:
        with Image.open(path) as img:
            mode, (width, height), bands = img.mode, img.size, len(img.getbands())
    except (OSError, UnidentifiedImageError) as exc:
        raise ImageFileError(f'{path}: cannot be read as an image ({exc})') from None
    # OpenCV expands palette images to BGR(A); 16-bit PNG and TIFF keep two bytes per sample.
    channels = 4 if mode == 'P' else bands
    bytes_per_sample = 4 if mode in ('I', 'F') else 2 if '16' in mode else 1
    return ImageHeader(Path(path), height, width, channels, bytes_per_sample)


def decode(path: PathLike) -> np.ndarray:
    """The image as stored (OpenCV IMREAD_UNCHANGED: bit depth, channels and alpha kept, BGR order)."""
    import cv2

    # np.fromfile + imdecode, unlike cv2.imread, reads any file name the OS accepts.
    data = np.fromfile(os.fspath(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
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
