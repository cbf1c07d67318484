"""BasicSR's dataset preparation (``scripts/data_preparation``, which pip's basicsr does not ship) as functions:
``make_lmdb``, ``make_lr`` (MATLAB-exact bicubic) and ``extract_subimages``; `ramit make-lmdb/make-lr/extract-subimages`
call them.

Each writes into a hidden staging folder beside its output and renames it into place only when every image is
done, so an interrupted or failed run never leaves a half-written result at the output path (and ``overwrite`` keeps
the old result until the new one is complete). The finished folder lists what it holds in a hidden record
(``OutputRecord``): ``overwrite`` replaces a folder only when the record says this command wrote all of it, so
nothing else of the user's is ever deleted. An output may not be (or contain) an input or another output, and no two
inputs may be written under one name.
"""
import errno
import math
import os
import re
import shutil
from contextlib import contextmanager
from multiprocessing import Pool
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import cv2
import lmdb
import numpy as np
from tqdm import tqdm

from basicsr.data.transforms import mod_crop
from basicsr.utils.lmdb_util import LmdbMaker
from basicsr.utils.matlab_functions import calculate_weights_indices

from ramit.errors import RamitError
from ramit.fileio import OutputRecord, hidden_folder, make_folder, named_output_errors, output_error, replace_folder
from ramit.images import IMAGE_EXTENSIONS, ImageFileError, ImageHeader, decode, list_images, read_header

# EDSR/BasicSR name LR files '<name>x<scale>.png'; the scales BasicSR's extract_subimages.py strips.
SCALE_SUFFIX = re.compile(r'x[2348]$')
# BasicSR splits meta_info lines on spaces and keys on the first '.', and LMDB keys are ASCII.
VALID_KEY = re.compile(r'^[\x21-\x7e]+$')


class DataPrepError(RamitError):
    """A one-line, user-facing error naming the option or file at fault."""


def input_images(folder: Path, recursive: bool = False) -> List[Path]:
    """Image files in the --input ``folder`` (and its sub-folders if ``recursive``), sorted; DataPrepError when
    there are none."""
    if not folder.is_dir():
        problem = 'is a file, not a folder' if folder.exists() else 'no such folder'
        raise DataPrepError(f'--input {folder}: {problem}')
    paths = list_images(folder, recursive)
    if not paths:
        raise DataPrepError(f"--input {folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
    return paths


def read_headers(paths: Sequence[Path]) -> List[ImageHeader]:
    """read_header of every path, with a progress bar (closed before an error is reported)."""
    with tqdm(paths, desc='Scan', unit='image') as bar:
        return [read_header(p) for p in bar]


def write_png(path: Path, img: np.ndarray, compress_level: int) -> None:
    """Write a PNG; DataPrepError naming the file when OpenCV cannot."""
    if not cv2.imwrite(str(path), img, [cv2.IMWRITE_PNG_COMPRESSION, compress_level]):
        raise DataPrepError(f'{path}: could not be written')


def common_scale_suffix(stems: Sequence[str]) -> str:
    """'x2' when every name ends with the same EDSR scale suffix (an LR folder: 'babyx2'), else ''."""
    suffixes = {match.group(0) if match else '' for match in map(SCALE_SUFFIX.search, stems)}
    return suffixes.pop() if len(suffixes) == 1 else ''


def image_keys(paths: Sequence[Path], root: Path, strip_scale_suffix: bool = True) -> List[str]:
    """BasicSR keys (path below `root` without extension: the file stem for a flat folder), without the common
    'x<scale>' of an LR folder so they match the HR keys."""
    stems = [p.relative_to(root).with_suffix('').as_posix() for p in paths]
    suffix = common_scale_suffix(stems) if strip_scale_suffix else ''
    keys = [stem[:len(stem) - len(suffix)] for stem in stems]
    seen = {}
    for path, key in zip(paths, keys):
        if key in seen:
            raise DataPrepError(f'{seen[key].relative_to(root)} and {path.relative_to(root)} in {root} both give '
                                f'the key {key!r}')
        seen[key] = path
    return keys


def check_outputs(overwrite: bool, inputs: Sequence[Tuple[str, Path]],
                  outputs: Sequence[Tuple[str, Optional[Path]]], command: str) -> None:
    """DataPrepError (nothing touched) when an output is, or is a folder containing, an input or another output,
    exists without ``overwrite``, or is not entirely an earlier output of ``command`` (its OutputRecord)."""
    outputs = [(option, path) for option, path in outputs if path is not None]
    for option, output in outputs:
        resolved = output.resolve()
        for other_option, other in [*inputs, *outputs]:
            if other is output:
                continue
            if resolved == other.resolve() or resolved in other.resolve().parents:
                relation = 'is' if resolved == other.resolve() else 'contains'
                raise DataPrepError(f'{option} {output} {relation} {other_option} {other}: replacing it would delete '
                                    'that; give a separate folder')
    for option, output in outputs:
        if not output.exists():
            continue
        if not overwrite:
            raise DataPrepError(f'{option} {output} already exists; pass --overwrite to replace it')
        if not output.is_dir():
            raise DataPrepError(f'{option} {output} is a file, not an earlier output of ramit {command}; not replaced')
        reason = OutputRecord(output, command).replaceable()
        if reason:
            raise DataPrepError(f'{option} {output}: not replaced: {reason}; --overwrite replaces only an earlier '
                                'output, so nothing was changed: choose another folder or move them')


@contextmanager
def staged_output(output: Path, command: str) -> Iterator[Path]:
    """Yield a not-yet-existing path beside ``output``; on success its files are recorded (``OutputRecord``) and it
    replaces ``output``, on failure it vanishes. The caller has checked ``output`` with check_outputs."""
    make_folder(output.parent)
    # Same folder as the output, so the final renames stay on one file system and are atomic.
    staging = Path(hidden_folder(output))
    try:
        target = staging / output.name
        with named_output_errors(output):  # a full disk: one line, and the staging folder goes
            yield target
            OutputRecord(target, command).write(p.relative_to(target).as_posix() for p in target.rglob('*')
                                                if p.is_file())
        replace_folder(target, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def unique_names(paths: Sequence[Path], names: Sequence[str]) -> None:
    """DataPrepError naming two inputs that would be written under one output name."""
    first = {}
    for path, name in zip(paths, names):
        if name in first:
            raise DataPrepError(f'{first[name]} and {path} would both be written as {name}; rename one of them')
        first[name] = path


def _init_worker() -> None:
    """One torch thread per worker process: the pool already uses the cores."""
    import torch

    torch.set_num_threads(1)


def run_parallel(fn: Callable, items: Sequence, n_thread: int, desc: str, unit: str = 'image') -> Iterator:
    """fn(*item) for every item, in order, over `n_thread` processes, with a progress bar."""
    with tqdm(total=len(items), desc=desc, unit=unit) as pbar:
        if n_thread <= 1 or len(items) <= 1:
            for item in items:
                result = fn(*item)
                pbar.update(1)
                yield result
            return
        with Pool(min(n_thread, len(items)), initializer=_init_worker) as pool:
            for result in pool.imap(_Star(fn), items, chunksize=1):
                pbar.update(1)
                yield result


class _Star:
    """Picklable fn(*args) adapter for Pool.imap."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def __call__(self, args: tuple):
        return self.fn(*args)


# ---------------------------------------------------------------------------------------------------- make-lmdb
def _encode(path: Path, key: str, compress_level: int) -> Tuple[str, bytes, Tuple[int, int, int]]:
    """What basicsr's read_img_worker does (the image as stored, PNG-encoded), reading through ramit.images, which
    names an unreadable file (basicsr uses cv2.imread's result unchecked) and applies EXIF orientation."""
    img = decode(path)
    ok, encoded = cv2.imencode('.png', img, [cv2.IMWRITE_PNG_COMPRESSION, compress_level])
    if not ok:
        raise ImageFileError(f'{path}: cannot be encoded as PNG')
    h, w = img.shape[:2]
    return key, encoded, (h, w, 1 if img.ndim == 2 else img.shape[2])


def lmdb_map_size(headers: Sequence[ImageHeader]) -> int:
    """An upper bound of the LMDB size: raw samples (PNG never grows them by more than ~1%) plus page slack."""
    raw = sum(h.height * h.width * h.channels * h.bytes_per_sample for h in headers)
    return int(raw * 1.1) + 65536 * len(headers) + (64 << 20)


def make_lmdb(input_dir: Path, output: Path, overwrite: bool = False, compress_level: int = 1,
              n_thread: int = 1, strip_scale_suffix: bool = True, recursive: bool = False) -> List[str]:
    """Pack the images of `input_dir` into a BasicSR LMDB (meta_info.txt, key = file stem); returns the keys."""
    if output.suffix != '.lmdb':
        raise DataPrepError(f"--output {output}: an LMDB folder name must end with '.lmdb' (BasicSR requires it)")
    check_outputs(overwrite, [('--input', input_dir)], [('--output', output)], 'make-lmdb')
    paths = input_images(input_dir, recursive=recursive)
    keys = image_keys(paths, input_dir, strip_scale_suffix)
    for path, key in zip(paths, keys):
        if not VALID_KEY.match(key) or '.' in key:
            raise DataPrepError(f'{path}: {key!r} cannot be an LMDB key: BasicSR needs ASCII names without '
                                'spaces or dots before the extension; rename the file')
    headers = read_headers(paths)
    with staged_output(output, 'make-lmdb') as target:
        maker = LmdbMaker(str(target), map_size=lmdb_map_size(headers), compress_level=compress_level)
        items = [(p, k, compress_level) for p, k in zip(paths, keys)]
        try:
            try:
                for key, img_byte, shape in run_parallel(_encode, items, n_thread, desc='Write LMDB'):
                    maker.put(img_byte.tobytes(), key, shape)
            except BaseException:  # a full disk, an unreadable image, Ctrl-C: release the database first
                maker.txn.abort()
                maker.env.close()
                maker.txt_file.close()
                raise
            maker.close()  # the commit: may fill the disk too
        except lmdb.DiskError:  # LMDB's ENOSPC; the staging folder with the unfinished database is removed
            raise output_error(output, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))) from None
    return keys


# ------------------------------------------------------------------------------------------------------ make-lr
def _resize_axis(img: np.ndarray, axis: int, scale: int) -> np.ndarray:
    """MATLAB's bicubic (antialiased) 1/scale resize along one axis, in float64, with symmetric borders."""
    length = img.shape[axis]
    weights, indices, pad_start, pad_end = calculate_weights_indices(length, math.ceil(length / scale), 1 / scale,
                                                                     'cubic', 4, True)
    if max(pad_start, pad_end) > length:
        raise ValueError(f'{length} pixels are too few to downscale by {scale}')
    x = np.moveaxis(img, axis, 0).astype(np.float64)
    padded = np.concatenate([x[:pad_start][::-1], x, x[length - pad_end:][::-1]])
    first = indices[:, 0].long().numpy()
    broadcast = (-1,) + (1,) * (x.ndim - 1)
    out = sum(w.reshape(broadcast) * padded[first + k] for k, w in enumerate(weights.double().numpy().T))
    return np.moveaxis(out, 0, axis)


def bicubic_downscale(img: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB imresize(img, 1/scale, 'bicubic') of an 8/16-bit image, mod-cropped first: bit-exact to MATLAB."""
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f'only 8- and 16-bit images can be downscaled, not {img.dtype}')
    peak = np.iinfo(img.dtype).max

    def to_int(x: np.ndarray) -> np.ndarray:
        # MATLAB rounds halves away from zero (np.round would round them to even).
        return np.clip(np.floor(x + 0.5), 0, peak)

    # MATLAB resizes rows, then columns, and stores the intermediate in the input's integer class; basicsr's
    # imresize keeps it in float, which differs from MATLAB's LR files by up to 2 levels in ~12% of pixels.
    rows = to_int(_resize_axis(mod_crop(img, scale), 0, scale))
    return to_int(_resize_axis(rows, 1, scale)).astype(img.dtype)


def _downscale_file(path: Path, lr_path: Path, hr_path: Optional[Path], scale: int) -> None:
    """Write the LR image of one HR file (and its mod-cropped HR when hr_path is given)."""
    img = decode(path)
    try:
        lr = bicubic_downscale(img, scale)
    except ValueError as exc:
        raise DataPrepError(f'{path}: {exc}') from None
    write_png(lr_path, lr, 3)
    if hr_path is not None:
        write_png(hr_path, mod_crop(img, scale), 3)


def make_lr(input_dir: Path, output: Path, scale: int, overwrite: bool = False, n_thread: int = 1,
            hr_output: Optional[Path] = None) -> int:
    """MATLAB-bicubic LR images '<stem>x<scale>.png' of every HR image; returns how many were written."""
    if scale < 2:
        raise DataPrepError(f'--scale {scale}: must be an integer of at least 2')
    check_outputs(overwrite, [('--input', input_dir)], [('--output', output), ('--hr-output', hr_output)], 'make-lr')
    paths = input_images(input_dir)
    unique_names(paths, [f'{p.stem}x{scale}.png' for p in paths])
    for header in read_headers(paths):
        if header.height < scale or header.width < scale:
            raise DataPrepError(f'{header.path}: {header.width}x{header.height} is smaller than --scale {scale}')
    with staged_output(output, 'make-lr') as lr_dir, _optional_stage(hr_output) as hr_dir:
        lr_dir.mkdir()
        if hr_dir is not None:
            hr_dir.mkdir()
        items = [(p, lr_dir / f'{p.stem}x{scale}.png', hr_dir / f'{p.stem}.png' if hr_dir else None, scale)
                 for p in paths]
        for _ in run_parallel(_downscale_file, items, n_thread, desc=f'Bicubic x{scale}'):
            pass
    return len(paths)


@contextmanager
def _optional_stage(output: Optional[Path]) -> Iterator[Optional[Path]]:
    """staged_output for an optional output; yields None when there is none."""
    if output is None:
        yield None
        return
    with staged_output(output, 'make-lr') as target:
        yield target


# ------------------------------------------------------------------------------------------- extract-subimages
def crop_starts(length: int, crop_size: int, step: int, thresh_size: int) -> List[int]:
    """Crop offsets along one axis as BasicSR's extract_subimages.py: every `step`, plus a last flush crop when
    more than `thresh_size` pixels would be left over."""
    starts = list(range(0, length - crop_size + 1, step))
    if length - (starts[-1] + crop_size) > thresh_size:
        starts.append(length - crop_size)
    return starts


def _extract_file(path: Path, out_dir: Path, name: str, crop_size: int, step: int, thresh_size: int,
                  compress_level: int) -> int:
    """Write the sub-images '<name>_s001.png', ... of one image; returns how many."""
    img = decode(path)
    index = 0
    for top in crop_starts(img.shape[0], crop_size, step, thresh_size):
        for left in crop_starts(img.shape[1], crop_size, step, thresh_size):
            index += 1
            crop = np.ascontiguousarray(img[top:top + crop_size, left:left + crop_size, ...])
            write_png(out_dir / f'{name}_s{index:03d}.png', crop, compress_level)
    return index


def extract_subimages(input_dir: Path, output: Path, crop_size: int = 480, step: int = 240, thresh_size: int = 0,
                      overwrite: bool = False, n_thread: int = 1, compress_level: int = 3) -> int:
    """Crop every image into overlapping `crop_size` squares (BasicSR's DIV2K recipe); returns how many."""
    for option, value in (('--crop-size', crop_size), ('--step', step)):
        if value < 1:
            raise DataPrepError(f'{option} {value}: must be positive')
    if thresh_size < 0:
        raise DataPrepError(f'--thresh-size {thresh_size}: must not be negative')
    check_outputs(overwrite, [('--input', input_dir)], [('--output', output)], 'extract-subimages')
    paths = input_images(input_dir)
    for header in read_headers(paths):
        if header.height < crop_size or header.width < crop_size:
            raise DataPrepError(f'{header.path}: {header.width}x{header.height} is smaller than '
                                f'--crop-size {crop_size}')
    # As BasicSR's script, LR names lose their x<scale> so LR and HR sub-images share names (and LMDB keys).
    names = image_keys(paths, input_dir)
    with staged_output(output, 'extract-subimages') as out_dir:
        out_dir.mkdir()
        items = [(p, out_dir, n, crop_size, step, thresh_size, compress_level) for p, n in zip(paths, names)]
        return sum(run_parallel(_extract_file, items, n_thread, desc='Extract'))
