"""Writing files and folders so that an interrupted or failed write never leaves a half result at the destination.

Temporary files and folders are created with the modes ordinary files and folders get (0o666 / 0o777 minus the
user's umask), not tempfile's private 0o600 / 0o700: a renamed-into-place result keeps the mode it was created with,
and a shared experiment folder must stay readable to the colleagues the umask allows.
A full disk or an output that cannot be written becomes a one-line error naming the path (``output_error``), and
``exclusive_lock`` keeps two runs from writing into one experiment.
"""
import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Union

import psutil

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


def ordinary_mode(path: PathLike, folder: bool = False) -> None:
    """Give ``path`` the mode the umask gives new files (0o666) or folders (0o777): some writers (safetensors)
    create private 0o600 files, and a renamed-into-place result keeps its mode."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if folder else 0o666) & ~umask)


@contextlib.contextmanager
def atomic_output(path: PathLike) -> Iterator[str]:
    """Yield a hidden temporary path beside ``path``; renamed to ``path`` on success, deleted on failure.

    A full disk or an unwritable destination is reported as output_error(path); ``path`` itself is untouched.
    """
    tmp = _create_hidden(path, '.part', _create_file)
    try:
        with named_output_errors(path):
            yield tmp
            ordinary_mode(tmp)
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


def processes_using(folder: PathLike) -> List[int]:
    """Pids of other processes that hold a file inside ``folder`` open for writing (a running experiment keeps its
    log open; a reader, such as another rank loading a checkpoint, does not count); processes this user may not
    inspect are not seen."""
    root = os.path.realpath(folder) + os.sep
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if any(f.path.startswith(root) and getattr(f, 'mode', 'w') != 'r' for f in proc.open_files()):
                found.append(proc.pid)
        except (psutil.Error, OSError):
            continue
    return found


def posix_lock_holders() -> Optional[frozenset]:
    """Pids of the processes holding a POSIX record lock (lockf) on any file, from Linux's /proc/locks; None where
    the system keeps no such list."""
    try:
        with open('/proc/locks') as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    # '1: POSIX  ADVISORY  WRITE <pid> <dev:inode> 0 EOF'; a waiter's line has '->' after the number.
    return frozenset(int(fields[4]) for fields in map(str.split, lines)
                     if len(fields) > 4 and fields[1] == 'POSIX' and fields[4].isdigit())


@contextlib.contextmanager
def exclusive_lock(path: PathLike, what: str, guarded: Optional[PathLike] = None,
                   wait: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing) for the block; LockedError if taken (with
    ``wait``: once it is free).

    A POSIX record lock (lockf): the kernel releases it when its process ends in any way (SIGKILL included), and,
    unlike flock, forked children (data-loader workers, which may outlive a killed run by seconds) do not hold it.
    It is per process: within one process a second lock on the same file succeeds. The holder's pid is written
    into the file for the message a second process gets. A lock file deleted or replaced while its holder runs is
    no lock, so the folder it ``guarded`` is also refused while another process keeps a file open inside it and
    (where /proc/locks lists them) holds a lock: the forked data-loader workers of a killed run keep its files open
    for seconds after, but hold none.
    """
    while True:
        with named_output_errors(path):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EACCES, errno.EAGAIN):
                os.close(fd)
                raise
            holder = os.pread(fd, 32, 0).decode(errors='replace').strip() or '?'
            os.close(fd)
            raise LockedError(f'{what} is in use by a running process (pid {holder}, lock {os.fspath(path)}); '
                              'wait for it to finish or stop it first') from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # deleted or replaced between open and lock: lock the file that is there now
    try:
        users = processes_using(guarded) if guarded is not None and os.path.isdir(guarded) else []
        holders = posix_lock_holders() if users else None
        if holders is not None:
            users = [pid for pid in users if pid in holders]
        if users:
            raise LockedError(f'{what} is in use by a running process (pid {users[0]} has files open in '
                              f'{os.fspath(guarded)}); wait for it to finish or stop it first')
        os.ftruncate(fd, 0)
        os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
        yield
    finally:
        os.close(fd)


class OutputRecord:
    """The hidden list of what a command wrote into an output folder: ``--overwrite`` may replace a folder only
    when it holds exactly what the record lists (and the record), so nothing else of the user's is ever deleted."""

    NAME = '.ramit-output.json'

    def __init__(self, folder: PathLike, command: str) -> None:
        self.folder, self.command = Path(folder), command

    def write(self, names: Iterable[str]) -> None:
        """Record ``names`` (paths relative to the folder) as this command's output."""
        (self.folder / self.NAME).write_text(json.dumps({'command': self.command, 'files': sorted(names)}))

    def replaceable(self) -> Optional[str]:
        """None when the existing folder is an earlier output of this command; else why it may not be replaced."""
        record = self.folder / self.NAME
        try:
            content = json.loads(record.read_text())
            listed, writer = set(content.get('files', [])), content.get('command')
        except FileNotFoundError:
            return f'it was not written by ramit {self.command} (no {self.NAME} listing its files)'
        except (OSError, ValueError, AttributeError, TypeError):
            return f'its {self.NAME} is unreadable'
        if writer != self.command:
            return f'it is the output of ramit {writer}, not of ramit {self.command}'
        present = {p.relative_to(self.folder).as_posix() for p in self.folder.rglob('*')
                   if not p.is_dir() and p.name != self.NAME}
        foreign = sorted(present - listed)
        if foreign:
            return (f"it holds files ramit {self.command} did not write ({', '.join(foreign[:3])}"
                    f"{' ...' if len(foreign) > 3 else ''})")
        return None


def replace_folder(staged: PathLike, output: PathLike) -> None:
    """Move the complete folder ``staged`` to ``output``, replacing an earlier one only once the new one is there."""
    staged, output = Path(staged), Path(output)
    old = None
    if output.exists():
        old = Path(hidden_folder(output, '.replaced'))
        os.rmdir(old)
        output.rename(old)
    try:
        staged.rename(output)
    except OSError:
        if old is not None:
            old.rename(output)  # put the old output back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
