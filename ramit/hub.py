"""The authors' 15 published checkpoints by name: download once, verify the git blob id, reuse from a cache.

Files come from ``$RAMIT_URL_BASE/<file>`` (default: the authors' repository) into ``$RAMIT_CACHE``
(default ``~/.cache/ramit_plugin``). The transfer is torch.hub's ``download_url_to_file`` (progress bar,
partial file removed on failure); ours is only the check, because torch.hub checks a SHA-256 prefix in the file
name and the authors publish their files under plain names with only git's blob ids to check them by: the download
lands in a hidden temporary file in the cache folder, is checked against its git blob id, and only then renamed
into place; anything that fails is deleted. A cached file is re-hashed on every use (at most 4 MB, a few
milliseconds), so a file changed in the cache is noticed, deleted and fetched again. Nothing here imports torch
until a download starts, so the command line lists and checks names at once.
"""
import hashlib
import os
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

from .errors import CheckpointNotFoundError, OptionError, RunError
from .fileio import atomic_output, make_folder, output_error

DEFAULT_URL_BASE = 'https://github.com/rami0205/RAMiT/raw/main/pretrained'
URL_BASE_ENV = 'RAMIT_URL_BASE'
CACHE_ENV = 'RAMIT_CACHE'
CHUNK = 1 << 16  # bytes per read while hashing
# A --weights value with one of these endings, or a folder in it, names a file, never a model to download.
CHECKPOINT_SUFFIXES = ('.pth', '.pt', '.ckpt', '.safetensors', '.bin')


@dataclass(frozen=True)
class PublishedModel:
    """One published checkpoint: its file, git blob id and the network it holds."""

    name: str
    blob_id: str
    variant: str
    task: str
    scale: int

    @property
    def file(self) -> str:
        """File name in the authors' ``pretrained/`` folder."""
        return f'{self.name}.pth'


def _published() -> Dict[str, PublishedModel]:
    """The authors' files and their git blob ids (``git hash-object`` in their repository); the name's suffix
    gives task and scale."""
    suffix = {'X2': ('sr', 2), 'X3': ('sr', 3), 'X4': ('sr', 4), 'CDN': ('dn', 1), 'GDN': ('graydn', 1),
              'LLE': ('lle', 1), 'DR': ('dr', 1)}
    blobs = {
        'RAMiT_X2': 'd24abef234a2cc385bb5370e7ad732aaf21339f0',
        'RAMiT_X3': 'a8952db7da0b96fbf364ad96458f39471798ef26',
        'RAMiT_X4': 'fd1db2a3281653993fb453f3c69a83e036ccfd1d',
        'RAMiT_CDN': 'b14484b8ba0654f62d76003a5d8ac82588ce21b7',
        'RAMiT_GDN': '8fda226aeda99ebb267daeba5ecdba9dc97d668f',
        'RAMiT_LLE': '37704116f27ce1e6756b163a3748a01572e1041c',
        'RAMiT_DR': 'be7506ad214090522ba287b0d702425d2df7dce0',
        'RAMiT-1_X2': 'b8ba674258cea9d951ebb489714b51389f8dfb35',
        'RAMiT-1_X3': '3f7a712cc1faadc710344c80aac0508ee0069bbb',
        'RAMiT-1_X4': '255c738885b085ac33ffdf2179a43a15be1f8e2f',
        'RAMiT-1_CDN': '591c12909e3449c1bceb359c98a0fbff09de8bb6',
        'RAMiT-slimSR_X2': '8796cbe5ad5204fb59a95d97854e52ba9d26fb64',
        'RAMiT-slimSR_X3': '89855187780881e715cc896bcd1f7be6953fd891',
        'RAMiT-slimSR_X4': '4013e96ca820b76556543a46ccfde84d916c95cb',
        'RAMiT-slimLLE_LLE': 'a75937255b9f778b0290c82d31f446557d3097e0',
    }
    models = {}
    for name, blob in blobs.items():
        variant, kind = name.rsplit('_', 1)
        task, scale = suffix[kind]
        models[name] = PublishedModel(name, blob, variant, task, scale)
    return models


PUBLISHED: Dict[str, PublishedModel] = _published()


class HubError(RunError, RuntimeError):
    """A published checkpoint could not be fetched or failed verification (one-line message, exit status 1)."""


def url_base() -> str:
    """Where files are downloaded from ($RAMIT_URL_BASE or the authors' repository)."""
    return os.environ.get(URL_BASE_ENV, DEFAULT_URL_BASE).rstrip('/')


def cache_dir() -> Path:
    """The cache folder ($RAMIT_CACHE or ~/.cache/ramit_plugin); not created here. OptionError if it is a file."""
    env = os.environ.get(CACHE_ENV)
    path = Path(env).expanduser() if env else Path.home() / '.cache' / 'ramit_plugin'
    if path.exists() and not path.is_dir():
        raise OptionError(f'{CACHE_ENV + "=" + env if env else path}: is a file; the cache must be a folder '
                          f'(set {CACHE_ENV} to one; it is created when first needed)')
    return path


def git_blob_id(path: Union[str, os.PathLike]) -> str:
    """What ``git hash-object FILE`` prints: SHA-1 over b"blob <size>\\0" + the file's bytes."""
    path = Path(path)
    digest = hashlib.sha1(b'blob %d\0' % path.stat().st_size)
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(CHUNK), b''):
            digest.update(chunk)
    return digest.hexdigest()


def lookup(name: str) -> Optional[PublishedModel]:
    """The published model called ``name`` (case-insensitive, '.pth' optional), or None."""
    key = name[:-4] if name.lower().endswith('.pth') else name
    for model in PUBLISHED.values():
        if model.name.lower() == key.lower():
            return model
    return None


def cached_path(model: PublishedModel) -> Path:
    """Where ``model`` lives in the cache."""
    return cache_dir() / model.file


def is_cached(model: PublishedModel) -> bool:
    """True if the cache holds ``model`` with the right blob id."""
    path = cached_path(model)
    return path.is_file() and git_blob_id(path) == model.blob_id


def download(model: PublishedModel, progress: bool = True) -> Path:
    """Path of ``model`` in the cache, downloading and verifying it first if needed; HubError on failure."""
    path = cached_path(model)
    if path.is_file():
        if git_blob_id(path) == model.blob_id:
            return path
        path.unlink()
        print(f'{path}: cached file has the wrong git blob id; deleted, downloading again')
    make_folder(path.parent)  # RAMIT_CACHE unwritable, or a file: one line naming it
    url = f'{url_base()}/{model.file}'
    with atomic_output(path) as tmp:
        _fetch(url, tmp, progress)
        found = git_blob_id(tmp)
        if found != model.blob_id:
            size = os.path.getsize(tmp)
            raise HubError(f'{url}: downloaded file ({size} bytes) has git blob id {found}, expected {model.blob_id} '
                           '(interrupted or altered download); deleted, not used')
    return path


def _fetch(url: str, dest: str, progress: bool) -> None:
    """torch.hub.download_url_to_file into ``dest``; HubError (one line) when the transfer fails."""
    from torch.hub import download_url_to_file  # torch is imported only when a download starts

    try:
        download_url_to_file(url, dest, progress=progress)
    except urllib.error.HTTPError as err:
        raise HubError(f'{url}: download failed (HTTP {err.code} {err.reason}); nothing was cached; '
                       f'{_by_hand(url)}') from None
    except OSError as err:  # URLError, timeouts, connection resets
        if not isinstance(err, urllib.error.URLError) and output_error(dest, err) is not None:
            raise  # a full or unwritable cache folder: atomic_output names the file
        reason = getattr(err, 'reason', err)
        raise HubError(f'{url}: download failed ({reason}); nothing was cached; {_by_hand(url)}') from None
    except Exception as err:  # http.client.IncompleteRead and other protocol errors
        raise HubError(f'{url}: download interrupted ({type(err).__name__}); partial file deleted, not used') from None


def _by_hand(url: str) -> str:
    """How to get a file without this machine downloading it."""
    return (f'fetch it elsewhere and put it into {cache_dir()} under its name (it is picked up and verified '
            f'there), or set {URL_BASE_ENV} to a mirror of {url.rsplit("/", 1)[0]}')


def looks_like_path(spec: str) -> bool:
    """Whether a --weights value names a file (a folder in it, or a checkpoint file ending) rather than a model."""
    return os.sep in spec or '/' in spec or spec.startswith(('.', '~')) or spec.lower().endswith(CHECKPOINT_SUFFIXES)


def resolve_weights(spec: Union[str, os.PathLike], progress: bool = True, option: str = '--weights'
                    ) -> Tuple[Path, Optional[PublishedModel]]:
    """A checkpoint path for ``spec`` (a file, or a published name fetched into the cache) and its model.

    The model is also returned for a local file named like a published one (e.g. 'RAMiT-1_CDN.pth'), so its
    task is known even where the shapes alone are ambiguous. ``option`` names the argument in errors ('' for a
    positional one).
    """
    path = Path(spec).expanduser()
    if path.is_file():
        return path, lookup(path.name)
    check_weights_name(spec, option)
    model = lookup(str(spec))
    return download(model, progress=progress), model


def check_weights_name(spec: Union[str, os.PathLike], option: str = '--weights') -> None:
    """CheckpointNotFoundError unless ``spec`` is an existing file or a published model name: a value that looks like
    a path is a missing file, never a download."""
    spec = os.fspath(spec)
    where = f'{option} {spec}' if option else spec
    if Path(spec).expanduser().is_file():
        return
    if Path(spec).expanduser().is_dir():
        raise CheckpointNotFoundError(f'{where}: is a folder; give a checkpoint file or a published model name')
    if looks_like_path(spec):
        model = lookup(Path(spec).name)
        hint = f' (to download the published model, give its name: {model.name})' if model else ''
        raise CheckpointNotFoundError(f'{where}: no such file{hint}')
    if lookup(spec) is None:
        raise CheckpointNotFoundError(f'{where}: no such file, and not a published model name; valid names: '
                                      f"{', '.join(PUBLISHED)} (see `ramit models`)")
