"""What the BasicSR and mmengine datasets share, framework-neutral: finding images (folders or LMDBs), checking
LMDBs, pairing degraded and clean images by name, and reading them (``ramit.noise`` adds the denoising noise).

Both adapters' datasets are thin: they take their options, call these functions and hand the images to their
framework's crop/flip transforms. No torch here: the option checks of the command line use it before torch loads.
"""
import os
import os.path as osp
import re
from typing import Dict, Iterable, List, Mapping, NamedTuple, Optional, Tuple

import cv2
import lmdb
import numpy as np

from .errors import RamitError
from .images import IMAGE_EXTENSIONS, ImageFileError, decode, list_images

# basicsr's meta_info line: 'name.png (h,w,c) compression'; folder meta_info files may give the name only.
META_INFO_LINE = re.compile(r'\s*(\S+)(?:\s+\((\d+),\s*(\d+)[,)])?')
# (lq template, gt template) over a shared name part '{}', for layouts whose two sides are named differently.
PAIRING_RULES: Dict[str, Tuple[str, str]] = {
    'same': ('{}', '{}'),  # LOL low/ <-> high/, Rain13K and Restormer's test sets input/ <-> target/
    'rain100h': ('rain-{}', 'norain-{}'),  # original Rain100H/Rain100L: rain-001.png <-> norain-001.png
    've-lol': ('low{}', 'normal{}'),  # VE-LOL / LOL-v2 real captures: low00001.png <-> normal00001.png
}
MAX_LISTED = 5  # unmatched names shown in an error


class DatasetError(RamitError, ValueError):
    """A dataset option or file is wrong; the message is one line that names it."""


class LmdbError(DatasetError):
    """An LMDB folder that is damaged or does not hold the keys its meta_info lists; the message names it."""


def dataset_label(opt: Mapping) -> str:
    """"dataset '<name>'" for error messages, so a user with several test sets knows which one is at fault."""
    return f"dataset {opt.get('name', opt.get('type', '?'))!r}"


# ------------------------------------------------------------------------------------------------------- LMDBs
class MetaInfoEntry(NamedTuple):
    """One line of a meta_info file: its number, the image name and (height, width) when given."""

    line: int
    name: str
    size: Optional[Tuple[int, int]]


def read_meta_info(path: str) -> List[MetaInfoEntry]:
    """The non-empty lines of a basicsr meta_info file ('name (h,w,c) compression', or just 'name'); DatasetError
    naming the line when a name gives no LMDB key (basicsr keys a name by what precedes its first '.')."""
    entries = []
    try:
        with open(path, encoding='utf-8') as f:
            lines = list(f)
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f'{path}: cannot be read as a meta_info file ({getattr(err, "strerror", None) or err})') \
            from None
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        match = META_INFO_LINE.match(text)
        if not match.group(1).split('.')[0]:
            raise DatasetError(f'{path}, line {number}: {match.group(1)!r} gives an empty LMDB key (a name must not '
                               "start with '.')")
        size = (int(match.group(2)), int(match.group(3))) if match.group(2) else None
        entries.append(MetaInfoEntry(number, match.group(1), size))
    return entries


def _data_file(root: str) -> str:
    return osp.join(os.fspath(root), 'data.mdb')


def check_lmdb(root: str, keys: Iterable[str], meta_info: str) -> None:
    """LmdbError unless ``root``'s data.mdb is complete and holds every key ``meta_info`` lists (``keys``).

    Reading a truncated data.mdb kills the process with SIGBUS (LMDB maps the file into memory), so its size is
    compared with the pages the database says it uses (its meta pages, read without mapping) before any key is read.
    """
    data = _data_file(root)
    if not osp.isfile(data):
        raise LmdbError(f'{data} is missing: not a complete LMDB (create it with `ramit make-lmdb`)')
    size = osp.getsize(data)
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


class LmdbGuard:
    """Sizes of the data.mdb files a training run reads, taken after they were checked: a database that shrinks
    while the run goes on (truncated by another program) is named before any read could crash with SIGBUS."""

    def __init__(self, roots: Iterable[str]) -> None:
        self.sizes = {_data_file(r): osp.getsize(_data_file(r)) for r in roots if osp.isfile(_data_file(r))}

    def check(self) -> None:
        """LmdbError naming a database smaller than when the run started."""
        for data, size in self.sizes.items():
            try:
                now = osp.getsize(data)
            except OSError:
                now = 0
            if now < size:
                raise LmdbError(f'{data} shrank from {size} to {now} bytes while the run read it (truncated or '
                                'replaced by another program?); stopped before reading it; restore the file, then '
                                'resume')


class ImageSource:
    """Reads images by path (disk) or by key (LMDB folders, one per side), each process opening the databases on
    its first read (forked data-loader workers must not share an LMDB environment)."""

    def __init__(self, backend: str, roots: Mapping[str, str], label: str) -> None:
        self.backend, self.roots, self.label = backend, dict(roots), label
        self.guard = LmdbGuard(self.roots.values()) if backend == 'lmdb' else None
        self._envs: Dict[str, lmdb.Environment] = {}
        self._pid: Optional[int] = None

    def read_bytes(self, path: str, side: str) -> bytes:
        """The encoded image under ``path`` (a file, or a key of the ``side`` LMDB)."""
        if self.backend != 'lmdb':
            with open(path, 'rb') as f:
                return f.read()
        self.guard.check()
        if self._pid != os.getpid():
            self._envs, self._pid = {}, os.getpid()
        if side not in self._envs:
            self._envs[side] = lmdb.open(self.roots[side], readonly=True, lock=False, readahead=False,
                                         meminit=False)
        with self._envs[side].begin(write=False) as txn:
            value = txn.get(path.encode())
        if value is None:
            raise DatasetError(f'{self.label}: {self.roots[side]} holds no key {path!r}')
        return value

    def read(self, path: str, side: str) -> np.ndarray:
        """The image as OpenCV decodes it (BGR, or gray [H, W]); DatasetError naming the file or LMDB key."""
        try:
            data = self.read_bytes(path, side)
        except OSError as err:
            raise DatasetError(f'{self.label}: {path}: {err.strerror or err}') from None
        where = f'{self.roots[side]} key {path!r}' if self.backend == 'lmdb' else path
        try:
            return decode(where, data)
        except ImageFileError as err:
            raise DatasetError(f'{self.label}: {err}') from None


def image_index(root: str, backend: str, option: str, meta_info_file: Optional[str] = None) -> Dict[str, str]:
    """Map key -> path for every image under ``root``; key = relative path without extension (POSIX slashes).

    ``backend`` 'lmdb': ``root`` is a basicsr LMDB folder; paths are its keys (from its meta_info.txt).
    ``backend`` 'disk': paths are file paths, found recursively (so a folder of symlinks to several training sets
    is one dataset). ``meta_info_file`` restricts either to the names it lists. Errors name ``option``.
    """
    if not osp.isdir(root):
        raise DatasetError(f'{option}: folder {root} does not exist')
    if backend == 'lmdb':
        if not (root.rstrip('/').endswith('.lmdb') and osp.isfile(osp.join(root, 'meta_info.txt'))):
            raise DatasetError(f'{option}: {root} is not an LMDB folder (a *.lmdb folder with meta_info.txt, '
                               'as `ramit make-lmdb` writes)')
        meta_info = meta_info_file or osp.join(root, 'meta_info.txt')
        # basicsr's paths_from_lmdb cuts at the first '.', which breaks keys of folders with dots in their names.
        keys = [osp.splitext(name)[0] for name in _meta_info_names(meta_info, option)]
        try:
            check_lmdb(root, keys, meta_info)
        except RamitError as err:
            raise DatasetError(f'{option}: {err}') from None
        return {key: key for key in keys}
    if meta_info_file:
        names = _meta_info_names(meta_info_file, option)
        missing = [name for name in names if not osp.isfile(osp.join(root, name))]
        if missing:
            raise DatasetError(f'{option}: {len(missing)} file(s) of {meta_info_file} are not in {root}, e.g. '
                               + ', '.join(missing[:5]))
    else:
        names = sorted(osp.relpath(path, root) for path in list_images(root, recursive=True))
    if not names:
        raise DatasetError(f'{option}: no images ({", ".join(IMAGE_EXTENSIONS)}) found in {root}')
    keys: Dict[str, str] = {}
    for name in names:
        key = osp.splitext(name)[0].replace(os.sep, '/')
        if key in keys:
            raise DatasetError(f'{option}: {keys[key]} and {osp.join(root, name)} have the same name in {root}; '
                               'keep one of them')
        keys[key] = osp.join(root, name)
    return keys


def _meta_info_names(meta_info_file: str, option: str) -> List[str]:
    """First token of each non-empty line (basicsr's meta_info format: 'name (h,w,c) [compression]')."""
    if not osp.isfile(meta_info_file):
        raise DatasetError(f'{option}: meta_info_file {meta_info_file} does not exist')
    try:
        return [entry.name for entry in read_meta_info(meta_info_file)]
    except DatasetError as err:
        raise DatasetError(f'{option}: {err}') from None


# ------------------------------------------------------------------------------------------------------ pairing
def _shared_name(key: str, template: str) -> str:
    """The '{}' part of ``key``'s file name under ``template``; a name not following the template stays whole.

    Letting such names pair as they are allows one folder tree to mix layouts (LOL's same-name pairs next to
    VE-LOL's low/normal pairs); anything still unpaired is reported.
    """
    folder, _, name = key.rpartition('/')
    prefix, _, suffix = template.partition('{}')
    if len(name) > len(prefix) + len(suffix) and name.startswith(prefix) and name.endswith(suffix):
        name = name[len(prefix):len(name) - len(suffix)]
    return f'{folder}/{name}' if folder else name


def _by_shared_name(images: Mapping[str, str], template: str, option: str) -> Dict[str, str]:
    """Shared name -> path; two files with the same shared name on one side are an error."""
    index: Dict[str, str] = {}
    for key, path in images.items():
        shared = _shared_name(key, template)
        if shared in index:
            raise DatasetError(f'{option}: {index[shared]} and {path} both pair as {shared!r}; keep one of them')
        index[shared] = path
    return index


def pair_images(lq_images: Mapping[str, str], gt_images: Mapping[str, str], templates: Tuple[str, str],
                label: str, lq_option: str = 'dataroot_lq', gt_option: str = 'dataroot_gt') -> List[Dict[str, str]]:
    """[{'lq_path', 'gt_path'}] sorted by name; a one-line DatasetError lists the first files without a partner."""
    lq = _by_shared_name(lq_images, templates[0], f'{label}: {lq_option}')
    gt = _by_shared_name(gt_images, templates[1], f'{label}: {gt_option}')
    only_lq = sorted(set(lq) - set(gt))
    only_gt = sorted(set(gt) - set(lq))
    if only_lq or only_gt:
        parts = [f'{len(names)} in {side} without a partner: ' + ', '.join(index[n] for n in names[:MAX_LISTED])
                 + (' ...' if len(names) > MAX_LISTED else '')
                 for side, names, index in ((lq_option, only_lq, lq), (gt_option, only_gt, gt)) if names]
        raise DatasetError(f'{label}: unmatched pairs (lq_tmpl {templates[0]!r}, gt_tmpl {templates[1]!r}): '
                           + '; '.join(parts))
    return [{'lq_path': lq[name], 'gt_path': gt[name]} for name in sorted(lq)]


def pairing_templates(opt: Mapping, label: str) -> Tuple[str, str]:
    """(lq template, gt template) from ``pairing`` (a rule name) or ``lq_tmpl``/``gt_tmpl`` (``filename_tmpl``)."""
    rule = opt.get('pairing', 'same')
    if rule not in PAIRING_RULES:
        raise DatasetError(f'{label}: pairing must be one of {", ".join(PAIRING_RULES)}, got {rule!r}')
    lq_tmpl, gt_tmpl = PAIRING_RULES[rule]
    # basicsr's PairedImageDataset calls the lq template filename_tmpl; accept it for option files moved over.
    lq_tmpl = opt.get('lq_tmpl', opt.get('filename_tmpl', lq_tmpl))
    gt_tmpl = opt.get('gt_tmpl', gt_tmpl)
    for key, tmpl in (('lq_tmpl', lq_tmpl), ('gt_tmpl', gt_tmpl)):
        if not isinstance(tmpl, str) or tmpl.count('{}') != 1:
            raise DatasetError(f"{label}: {key} must contain '{{}}' exactly once (e.g. 'rain-{{}}'), got {tmpl!r}")
    return lq_tmpl, gt_tmpl


# ----------------------------------------------------------------------------------------------------- pixels
def rgb_to_gray(img: np.ndarray) -> np.ndarray:
    """Integer RGB [H, W, 3] -> gray [H, W] of the same type with OpenCV's COLOR_RGB2GRAY weights, on the integers
    (as the paper's gray test sets)."""
    if img.dtype not in (np.uint8, np.uint16) or img.ndim != 3 or img.shape[2] != 3:
        raise DatasetError(f'rgb_to_gray expects an 8- or 16-bit [H, W, 3] RGB image, got {img.dtype} '
                           f'{tuple(img.shape)}')
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def as_rgb(img: np.ndarray, label: str, path: str) -> np.ndarray:
    """RGB [H, W, 3] (8 or 16 bits, as stored) of a decoded BGR, BGRA or gray image; alpha is dropped."""
    if img.dtype not in (np.uint8, np.uint16):
        raise DatasetError(f'{label}: {path} holds {img.dtype} samples; the datasets read 8- and 16-bit images')
    if img.ndim == 2 or img.shape[2] == 1:
        return cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def to_unit_range(img: np.ndarray) -> np.ndarray:
    """float32 in [0, 1] of an 8- or 16-bit image."""
    return img.astype(np.float32) / float(np.iinfo(img.dtype).max)
