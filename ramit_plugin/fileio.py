"""Writing files and folders so that an interrupted or failed write never leaves a half result at the destination.

Temporary files and folders are created with the modes ordinary files and folders get (0o666 / 0o777 minus the
user's umask), not tempfile's private 0o600 / 0o700: a renamed-into-place result keeps the mode it was created with,
and a shared experiment folder must stay readable to the colleagues the umask allows.
A full disk or an output that cannot be written becomes a one-line error naming the path (``output_error``), and
``exclusive_lock`` keeps two runs from writing into one experiment.
"""
import contextlib
import errno
import os
import re
import uuid
from typing import Callable, Iterator, List, Optional, Union

from .errors import RamitError, RunError

PathLike = Union[str, os.PathLike]
# The hidden temporary names _create_hidden makes: '.<name>.<12 hex digits>.part'.
PART_NAME = re.compile(r'^\..+\.[0-9a-f]{12}\.part$')
FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR}


class OutputError(RamitError):
    """An output path that cannot be written (no permission, read-only, a file where a folder should be)."""


class DiskFullError(RunError):
    """The disk or the quota filled up while writing; what was being written was removed."""


class LockedError(RamitError):
    """A lock another running process holds."""


def output_error(path: PathLike, err: OSError) -> Optional[RamitError]:
    """The one-line error for ``err``, met while writing ``path``; None if it is not about the disk or the path."""
    reason = err.strerror or str(err)
    if err.errno in FULL:
        return DiskFullError(f'{os.fspath(path)}: cannot be written ({reason}); nothing was left half-written')
    if err.errno in UNWRITABLE:
        where = f' ({err.filename})' if err.filename and os.fspath(err.filename) != os.fspath(path) else ''
        return OutputError(f'{os.fspath(path)}: cannot be written ({reason}{where})')
    return None


@contextlib.contextmanager
def named_output_errors(path: PathLike) -> Iterator[None]:
    """Turn an OSError about the disk or the output path inside the block into output_error(path)."""
    try:
        yield
    except OSError as err:
        converted = output_error(path, err)
        if converted is None:
            raise
        raise converted from None


def make_folder(path: PathLike) -> None:
    """os.makedirs(path, exist_ok=True); OutputError naming the path when it cannot be made (a file in the way,
    no permission, read-only)."""
    try:
        with named_output_errors(path):
            os.makedirs(path, exist_ok=True)
    except FileExistsError:
        raise OutputError(f'{os.fspath(path)}: cannot be created as a folder: a file of that name is in the way') \
            from None


def _create_hidden(path: PathLike, suffix: str, create: Callable[[str], None]) -> str:
    """Create a new hidden name '.<name>.<random><suffix>' beside ``path`` with ``create``; returns it."""
    folder, name = os.path.split(os.fspath(path))
    for _ in range(100):
        # A hidden name keeps folder scans (basicsr's auto_resume, image globs) from seeing a half-written result.
        candidate = os.path.join(folder or '.', f'.{name}.{uuid.uuid4().hex[:12]}{suffix}')
        try:
            with named_output_errors(path):
                create(candidate)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f'{path}: no free temporary name beside it')


def _create_file(path: str) -> None:
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))


@contextlib.contextmanager
def atomic_output(path: PathLike) -> Iterator[str]:
    """Yield a hidden temporary path beside ``path``; renamed to ``path`` on success, deleted on failure.

    A full disk or an unwritable destination is reported as output_error(path); ``path`` itself is untouched.
    """
    tmp = _create_hidden(path, '.part', _create_file)
    try:
        with named_output_errors(path):
            yield tmp
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def hidden_folder(path: PathLike, suffix: str = '.partial') -> str:
    """Create and return a new hidden folder beside ``path`` (mode 0o777 minus the umask)."""
    return _create_hidden(path, suffix, lambda candidate: os.mkdir(candidate, 0o777))


def remove_stale_parts(folder: PathLike) -> List[str]:
    """Delete the temporary files atomic_output left in ``folder`` when its process was killed; their names."""
    if not os.path.isdir(folder):
        return []
    stale = sorted(name for name in os.listdir(folder) if PART_NAME.match(name))
    for name in stale:
        os.unlink(os.path.join(folder, name))
    return stale


@contextlib.contextmanager
def exclusive_lock(path: PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing) for the block; LockedError if taken.

    A POSIX record lock (lockf): the kernel releases it when its process ends in any way (SIGKILL included), and,
    unlike flock, forked children (data-loader workers, which may outlive a killed run by seconds) do not hold it.
    It is per process: within one process a second lock on the same file succeeds. The holder's pid is written
    into the file for the message a second process gets.
    """
    import fcntl

    with named_output_errors(path):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            holder = os.pread(fd, 32, 0).decode(errors='replace').strip() or '?'
            raise LockedError(f'{what} is in use by a running process (pid {holder}, lock {os.fspath(path)}); '
                              'wait for it to finish or stop it first') from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
        yield
    finally:
        os.close(fd)
