"""Image lists for the restoration datasets: disk folders (recursive), LMDB folders and meta_info files."""
import os
import os.path as osp
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
from basicsr.utils import FileClient, imfrombytes
from torch.utils import data

from ..errors import RamitError
from ..image_files import IMAGE_EXTENSIONS, check_lmdb, list_images as image_paths, read_meta_info
from .errors import DatasetError


def dataset_label(opt: Mapping) -> str:
    """"dataset '<name>'" for error messages, so a user with several test sets knows which one is at fault."""
    return f"dataset {opt.get('name', opt.get('type', '?'))!r}"


def _meta_info_names(meta_info_file: str, option: str) -> List[str]:
    """First token of each non-empty line (basicsr's meta_info format: 'name (h,w,c) [compression]')."""
    if not osp.isfile(meta_info_file):
        raise DatasetError(f'{option}: meta_info_file {meta_info_file} does not exist')
    return [entry.name for entry in read_meta_info(meta_info_file)]


def list_images(root: str, backend: str, option: str, meta_info_file: Optional[str] = None) -> Dict[str, str]:
    """Map key -> path for every image under ``root``; key = relative path without extension (POSIX slashes).

    ``backend`` 'lmdb': ``root`` is a basicsr LMDB folder; paths are its keys (from its meta_info.txt).
    ``backend`` 'disk': paths are file paths, found recursively (so a folder of symlinks to several training sets
    is one dataset). ``meta_info_file`` restricts either to the names it lists. Errors name ``option``.
    """
    if not osp.isdir(root):
        raise DatasetError(f'{option}: folder {root} does not exist')
    if backend == 'lmdb':
        if not (root.endswith('.lmdb') and osp.isfile(osp.join(root, 'meta_info.txt'))):
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
        names = sorted(osp.relpath(path, root) for path in image_paths(root, recursive=True))
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


def lmdb_client_opts(io_backend: Optional[Mapping], roots: Sequence[str], client_keys: Sequence[str]) -> dict:
    """FileClient kwargs from ``io_backend`` (default disk); for LMDB one database per root (db_paths/client_keys)."""
    opts = dict(io_backend or {'type': 'disk'})
    opts.setdefault('type', 'disk')
    if opts['type'] == 'lmdb':
        opts['db_paths'] = list(roots)
        opts['client_keys'] = list(client_keys)
    return opts


class FileClientDataset(data.Dataset):
    """Base of the plugin's datasets: one basicsr FileClient per process, opened on first read."""

    label = 'dataset'
    io_backend_opt: dict = {}
    file_client: Optional[FileClient] = None

    def read_image(self, path: str, client_key: str, float32: bool) -> np.ndarray:
        """BGR [H, W, 3] image (uint8, or float32 in [0, 1]) as basicsr's imfrombytes decodes it."""
        if self.file_client is None:
            opts = dict(self.io_backend_opt)
            self.file_client = FileClient(opts.pop('type'), **opts)
        content = self.file_client.get(path, client_key)
        img = imfrombytes(content, float32=float32) if content else None
        if img is None:  # an LMDB key without data, an empty file, or one OpenCV cannot decode
            raise DatasetError(f'{self.label}: {path} is missing or not an image OpenCV can read')
        return img
