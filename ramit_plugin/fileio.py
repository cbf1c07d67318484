"""Writing files so that an interrupted or failed write never leaves a half file at the destination."""
import contextlib
import os
import tempfile
from typing import Iterator, Union


@contextlib.contextmanager
def atomic_output(path: Union[str, os.PathLike]) -> Iterator[str]:
    """Yield a hidden temporary path beside ``path``; renamed to ``path`` on success, deleted on failure."""
    folder, name = os.path.split(os.fspath(path))
    # A hidden name keeps folder scans (basicsr's auto_resume, image globs) from seeing a half-written file.
    fd, tmp = tempfile.mkstemp(prefix=f'.{name}.', suffix='.part', dir=folder or '.')
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
