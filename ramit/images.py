"""Image files: which names are images, listing folders, sizes from headers, decoding (as displayed: EXIF orientation
applied), the network's view of an image and back, and PNG outputs that say which command wrote them.

The one image-file module of the package: `ramit infer`, the data preparation commands, the datasets and the option
checks read and write images through it.
"""
import glob
import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Union

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import OptionError, RamitError

PathLike = Union[str, os.PathLike]
# What both OpenCV (imdecode) and Pillow (headers) read; anything else in a folder (READMEs, meta_info.txt) is skipped.
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
# OpenCV's RGB -> gray weights (COLOR_RGB2GRAY), as the gray denoising models were trained with.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)
EXIF_ORIENTATION = 0x0112
# PNG text chunk naming the command that wrote an output: what `--overwrite` may replace.
PROVENANCE_KEY = b'Software'


class ImageFileError(RamitError, ValueError):
    """A file that cannot be read as an image; the message names it."""


class ImageHeader(NamedTuple):
    """Size and sample layout of an image, read from its header only (no decoding); height and width as displayed."""

    path: Path
    height: int
    width: int
    channels: int
    bytes_per_sample: int
    frames: int = 1  # an animated PNG/WebP or a multi-page TIFF has more; OpenCV decodes the first
    orientation: int = 1  # EXIF orientation (1: as stored)


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
    # Only the header is read, so Pillow's decompression-bomb limit (~179M pixels) does not apply: large images are
    # what tiled inference is for, and decode() reports what OpenCV will not decode.
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(path) as img:
            mode, (width, height), bands = img.mode, img.size, len(img.getbands())
            frames = getattr(img, 'n_frames', 1)
            orientation = _orientation(img)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise ImageFileError(f'{path}: cannot be read as an image ({exc})') from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    if orientation in (5, 6, 7, 8):  # a quarter turn: displayed with height and width swapped
        width, height = height, width
    # OpenCV expands palette images to BGR(A); 16-bit PNG and TIFF keep two bytes per sample.
    channels = 4 if mode == 'P' else bands
    bytes_per_sample = 4 if mode in ('I', 'F') else 2 if '16' in mode else 1
    return ImageHeader(Path(path), height, width, channels, bytes_per_sample, frames, orientation)


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1 to 8) of an opened image, 1 when it has none or a bad one."""
    try:
        value = img.getexif().get(EXIF_ORIENTATION, 1)
    except (OSError, ValueError, SyntaxError):  # a damaged EXIF block: the pixels may still be fine
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


# Each EXIF orientation's display transform on [H, W, ...] pixels (Pillow's exif_transpose; np.rot90 turns
# anticlockwise).
_ORIENT = {
    2: lambda a: a[:, ::-1], 3: lambda a: np.rot90(a, 2), 4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, 3), 7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}


def orient(img: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels of a stored image as EXIF ``orientation`` (1 to 8) says to display them."""
    return np.ascontiguousarray(_ORIENT[orientation](img)) if orientation in _ORIENT else img


def decode(path: PathLike, data: Optional[bytes] = None) -> np.ndarray:
    """The image as displayed: OpenCV IMREAD_UNCHANGED (bit depth, channels and alpha kept, BGR order), turned as
    its EXIF orientation says. ``data``: the file's bytes when already read (an LMDB value)."""
    # np.fromfile + imdecode, unlike cv2.imread, reads any file name the OS accepts.
    buffer = np.frombuffer(data, np.uint8) if data is not None else np.fromfile(os.fspath(path), dtype=np.uint8)
    try:
        img = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED) if buffer.size else None
    except cv2.error as err:  # e.g. a header claiming more pixels than OpenCV decodes
        reason = ('more pixels than OpenCV decodes (CV_IO_MAX_IMAGE_PIXELS, 2^30 by default)'
                  if 'CV_IO_MAX_IMAGE_PIXELS' in str(err) else str(err).strip().splitlines()[-1])
        raise ImageFileError(f'{path}: cannot be decoded: {reason}') from None
    if img is None:
        raise ImageFileError(f'{path}: cannot be read as an image (corrupt file or unsupported format)')
    try:
        with Image.open(io.BytesIO(buffer)) as header:
            orientation = _orientation(header)
    except (OSError, UnidentifiedImageError, ValueError):  # OpenCV decodes what Pillow cannot parse
        orientation = 1
    return orient(img, orientation) if orientation != 1 else img


# --------------------------------------------------------------------------------------- the network's view
@dataclass
class LoadedImage:
    """An image as the network sees it, plus what is needed to write it back the same way."""

    rgb: np.ndarray              # float32 [H, W, C] in [0, 1], C = 3 (RGB) or 1
    alpha: Optional[np.ndarray]  # float32 [H, W] in [0, 1], or None
    max_value: int               # 255 or 65535: the bit depth to write back
    gray: bool                   # the file was single-channel


def read_image(path: PathLike) -> LoadedImage:
    """Read an 8/16-bit gray, colour or RGBA image; ImageFileError (one line) if unreadable or unsupported."""
    img = decode(path)
    if img.dtype == np.uint8:
        max_value = 255
    elif img.dtype == np.uint16:
        max_value = 65535
    else:
        raise ImageFileError(f'{path}: {img.dtype} images are not supported (only 8- and 16-bit)')
    img = img.astype(np.float32) / max_value
    if img.ndim == 2:
        img = img[:, :, None]
    alpha = None
    if img.shape[2] == 4:
        alpha = img[:, :, 3]
        img = img[:, :, :3]
    if img.shape[2] == 3:
        img = img[:, :, ::-1]  # OpenCV's BGR -> RGB
    elif img.shape[2] != 1:
        raise ImageFileError(f'{path}: images with {img.shape[2]} channels are not supported')
    return LoadedImage(np.ascontiguousarray(img), alpha, max_value, img.shape[2] == 1)


def to_network_channels(rgb: np.ndarray, in_chans: int) -> np.ndarray:
    """Gray into a colour network: replicated; colour into a gray network: OpenCV's gray weights."""
    if rgb.shape[2] == in_chans:
        return rgb
    if in_chans == 3:
        return np.repeat(rgb, 3, axis=2)
    return (rgb @ np.asarray(GRAY_WEIGHTS, dtype=np.float32))[:, :, None]


def from_network_channels(out: np.ndarray, gray: bool) -> np.ndarray:
    """Back to the file's layout: a gray input gets a gray output (OpenCV weights) from a colour network."""
    if gray and out.shape[2] == 3:
        return (out @ np.asarray(GRAY_WEIGHTS, dtype=np.float32))[:, :, None]
    return out


def upscale_alpha(alpha: np.ndarray, scale: int) -> np.ndarray:
    """Alpha resized by bicubic interpolation (clamped), as the network does not see it."""
    if scale == 1:
        return alpha
    h, w = alpha.shape
    return np.clip(cv2.resize(alpha, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC), 0, 1)


def encode_png(rgb: np.ndarray, alpha: Optional[np.ndarray], max_value: int, writer: str) -> bytes:
    """PNG bytes of float [H, W, C] RGB/gray (+ alpha) in [0, 1], quantised to the original bit depth, with a text
    chunk naming ``writer`` (``written_by`` reads it back).

    ``rgb`` is clipped and scaled in place (outputs of tiled runs are hundreds of MB; no float copy).
    """
    img = rgb[:, :, ::-1] if rgb.shape[2] == 3 else rgb
    if alpha is not None:
        img = np.concatenate([img, alpha[:, :, None]], axis=2)
    dtype = np.uint8 if max_value == 255 else np.uint16
    np.clip(img, 0, 1, out=img)
    img *= max_value
    img = np.rint(img, out=img).astype(dtype)
    ok, buf = cv2.imencode('.png', np.ascontiguousarray(img))
    if not ok:
        raise ImageFileError('PNG encoding failed')
    return _with_text_chunk(buf.tobytes(), PROVENANCE_KEY, writer.encode('latin-1'))


def _with_text_chunk(png: bytes, key: bytes, value: bytes) -> bytes:
    """``png`` with a tEXt chunk inserted right after its IHDR chunk (OpenCV's encoder writes none)."""
    end_of_ihdr = 8 + 8 + 13 + 4  # signature, IHDR length + type, IHDR data, CRC
    body = b'tEXt' + key + b'\0' + value
    chunk = struct.pack('>I', len(body) - 4) + body + struct.pack('>I', zlib.crc32(body))
    return png[:end_of_ihdr] + chunk + png[end_of_ihdr:]


def written_by(path: PathLike) -> Optional[str]:
    """The writer a PNG's text chunk names (what ``encode_png`` put there), or None (not ours, or not a PNG)."""
    try:
        with Image.open(path) as img:
            value = img.info.get(PROVENANCE_KEY.decode()) if img.format == 'PNG' else None
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    return value if isinstance(value, str) else None


def expand_inputs(inputs: Sequence[str]) -> List[Path]:
    """Image files named by files, folders (their image files, not recursive) and globs, each once, in order.

    OptionError naming the first file, folder or pattern that gives no image.
    """
    files: List[Path] = []
    for spec in inputs:
        path = Path(spec)
        if path.is_dir():
            found = list_images(path)
            if not found:
                raise OptionError(f"-i {spec}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
        elif path.is_file():
            found = [path]
        elif path.is_symlink():
            raise OptionError(f'-i {spec}: a link to {os.readlink(path)}, which does not exist')
        elif path.exists():
            raise OptionError(f'-i {spec}: not a regular file (a pipe or device); give image files')
        else:
            found = sorted(Path(m) for m in glob.glob(spec) if Path(m).is_file())
            if not found:
                raise OptionError(f'-i {spec}: no such file, folder or matching images')
        files += found
    return list(dict.fromkeys(files))


def broken_links(folder: PathLike) -> List[Path]:
    """Links with an image name in ``folder`` whose target is missing (list_images leaves them out)."""
    return sorted(p for p in Path(folder).iterdir() if p.is_symlink() and not p.exists() and is_image_name(p.name))
