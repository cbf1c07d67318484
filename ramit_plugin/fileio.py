"""Writing files and folders so that an interrupted or failed write never leaves a half result at the destination.

Temporary files and folders are created with the modes ordinary files and folders get (0o666 / 0o777 minus the
user's umask), not tempfile's private 0o600 / 0o700: a renamed-into-place result keeps the mode it was created with,
and a shared experiment folder must stay readable to the colleagues the umask allows.
"""
import contextlib
import os
import uuid
from typing import Callable, Iterator, Union

PathLike = Union[str, os.PathLike]


def _create_hidden(path: PathLike, suffix: str, create: Callable[[str], None]) -> str:
    """Create a new hidden name '.<name>.<random><suffix>' beside ``path`` with ``create``; returns it."""
    folder, name = os.path.split(os.fspath(path))
    for _ in range(100):
        # A hidden name keeps folder scans (basicsr's auto_resume, image globs) from seeing a half-written result.
        candidate = os.path.join(folder or '.', f'.{name}.{uuid.uuid4().hex[:12]}{suffix}')
        try:
            create(candidate)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f'{path}: no free temporary name beside it')


def _create_file(path: str) -> None:
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))


@contextlib.contextmanager
def atomic_output(path: PathLike) -> Iterator[str]:
    """Yield a hidden temporary path beside ``path``; renamed to ``path`` on success, deleted on failure."""
    tmp = _create_hidden(path, '.part', _create_file)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def hidden_folder(path: PathLike, suffix: str = '.partial') -> str:
    """Create and return a new hidden folder beside ``path`` (mode 0o777 minus the umask)."""
    return _create_hidden(path, suffix, lambda candidate: os.mkdir(candidate, 0o777))
