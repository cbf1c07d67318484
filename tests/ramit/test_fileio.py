"""fileio: the destination only ever holds a complete result (umask modes), write failures and locks in one line."""
import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ramit.datasets import DatasetError
from ramit.fileio import (DiskFullError, LockedError, OutputError, OutputRecord, atomic_output, exclusive_lock,
                          hidden_folder, make_folder, remove_stale_parts, replace_folder)


def test_success_renames_into_place_and_leaves_no_temporary(tmp_path):
    dest = tmp_path / 'out.bin'
    with atomic_output(dest) as tmp:
        assert tmp.startswith(str(tmp_path / '.out.bin.')) and not dest.exists()
        open(tmp, 'wb').write(b'new')
    assert dest.read_bytes() == b'new' and [p.name for p in tmp_path.iterdir()] == ['out.bin']


def test_failure_keeps_the_previous_file_and_removes_the_temporary(tmp_path):
    dest = tmp_path / 'out.bin'
    dest.write_bytes(b'old')
    with pytest.raises(RuntimeError), atomic_output(dest) as tmp:
        open(tmp, 'wb').write(b'half')
        raise RuntimeError('interrupted')
    assert dest.read_bytes() == b'old' and [p.name for p in tmp_path.iterdir()] == ['out.bin']


def test_files_and_staging_folders_get_the_umask_modes(tmp_path, umask_022):
    with atomic_output(tmp_path / 'out.bin') as tmp:
        assert stat.S_IMODE(os.stat(tmp).st_mode) == 0o644
        open(tmp, 'wb').write(b'new')
    assert stat.S_IMODE(os.stat(tmp_path / 'out.bin').st_mode) == 0o644
    folder = hidden_folder(tmp_path / 'data.lmdb')
    assert os.path.basename(folder).startswith('.data.lmdb.') and stat.S_IMODE(os.stat(folder).st_mode) == 0o755
    os.umask(0o077)
    with atomic_output(tmp_path / 'private.bin') as tmp:
        pass
    assert stat.S_IMODE(os.stat(tmp_path / 'private.bin').st_mode) == 0o600


def test_a_writer_making_a_private_file_still_gives_the_umask_mode(tmp_path, umask_022):
    """safetensors (and others) create 0o600 files: the result gets 0o644 under umask 022 all the same."""
    with atomic_output(tmp_path / 'out.bin') as tmp:
        with open(tmp, 'wb') as f:
            f.write(b'new')
        os.chmod(tmp, 0o600)
    assert stat.S_IMODE(os.stat(tmp_path / 'out.bin').st_mode) == 0o644


def test_a_full_disk_during_a_write_names_the_destination_and_leaves_nothing(tmp_path):
    dest = tmp_path / 'out.bin'
    dest.write_bytes(b'old')
    with pytest.raises(DiskFullError) as err, atomic_output(dest) as tmp:
        open(tmp, 'wb').write(b'half')
        raise OSError(errno.ENOSPC, 'No space left on device')
    assert str(err.value) == f'{dest}: cannot be written (No space left on device); nothing was left half-written'
    assert err.value.exit_code == 1
    assert dest.read_bytes() == b'old' and [p.name for p in tmp_path.iterdir()] == ['out.bin']


def test_an_output_under_a_file_is_named(tmp_path):
    (tmp_path / 'file').write_text('x')
    with pytest.raises(OutputError, match=f'^{tmp_path}/file/out.bin: cannot be written \\(Not a directory'):
        with atomic_output(tmp_path / 'file' / 'out.bin'):
            pass
    with pytest.raises(OutputError, match='cannot be created as a folder: a file of that name is in the way'):
        make_folder(tmp_path / 'file')


def test_only_our_stale_temporary_files_are_removed(tmp_path):
    names = ['.net_g_5.pth.0123456789ab.part', 'net_g_5.pth', '.notes.part', 'x.part', '.a.0123456789ab.partial']
    for name in names:
        (tmp_path / name).write_bytes(b'')
    assert remove_stale_parts(tmp_path) == ['.net_g_5.pth.0123456789ab.part']
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[1:])


def test_a_lock_held_by_another_process_is_refused_and_freed_when_it_dies(tmp_path, lock_holder):
    lock = tmp_path / '.exp.lock'
    holder = lock_holder(lock)
    with pytest.raises(LockedError) as err, exclusive_lock(lock, 'experiments/exp'):
        pass
    assert str(err.value) == (f'experiments/exp is in use by a running process (pid {holder.pid}, lock {lock}); '
                              'wait for it to finish or stop it first')
    holder.kill()  # as SIGKILL: the lock goes with the process
    holder.wait()
    with exclusive_lock(lock, 'experiments/exp'):
        assert lock.read_text() == f'{os.getpid()}\n'


def test_a_ramit_error_from_a_data_loader_worker_keeps_its_one_line_message():
    from torch.utils.data import DataLoader, Dataset

    from ramit.training import stop_loader_workers

    class Broken(Dataset):
        """Every sample is damaged."""

        def __len__(self) -> int:
            """Two samples."""
            return 2

        def __getitem__(self, index: int) -> None:
            """Always the one-line error."""
            raise DatasetError(f'dataset x: file {index}.png is damaged')

    batches = iter(DataLoader(Broken(), num_workers=1))
    try:
        with pytest.raises(DatasetError) as err:
            next(batches)
    finally:
        stop_loader_workers(batches)  # else a later collection waits 5 s for the worker, in another test
    assert str(err.value) == 'dataset x: file 0.png is damaged'


def test_a_lock_file_deleted_under_its_holder_still_guards_the_folder_the_holder_uses(tmp_path):
    """A lock file deleted (or replaced) while its holder runs is no lock: a second lockf on a new file succeeds.
    ``guarded`` refuses all the same while the holder keeps a file open in the folder (a running experiment keeps
    its log open)."""
    lock, folder = tmp_path / '.exp.lock', tmp_path / 'exp'
    folder.mkdir()
    holder = subprocess.Popen([sys.executable, '-c', (
        'import sys, time\n'
        'from ramit.fileio import exclusive_lock\n'
        f'with exclusive_lock({str(lock)!r}, "exp", guarded={str(folder)!r}):\n'
        f'    log = open({str(folder / "train.log")!r}, "w")\n'
        '    print("locked", flush=True)\n'
        '    time.sleep(300)\n')], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == 'locked\n'
        with pytest.raises(LockedError, match=f'pid {holder.pid}, lock {lock}'):
            with exclusive_lock(lock, 'exp', guarded=folder):
                pass
        lock.unlink()  # e.g. a user cleaning up hidden files while the run goes on
        with exclusive_lock(lock, 'exp'):
            pass  # the new file's lock is free: without guarded= nothing would stop a second run
        with pytest.raises(LockedError) as err:
            with exclusive_lock(lock, 'exp', guarded=folder):
                pass
        assert str(err.value) == (f'exp is in use by a running process (pid {holder.pid} has files open in '
                                  f'{folder}); wait for it to finish or stop it first')
    finally:
        holder.kill()
        holder.wait()
    with exclusive_lock(lock, 'exp', guarded=folder):
        assert lock.read_text() == f'{os.getpid()}\n'


def write_files(folder: Path, names: list) -> None:
    """Create ``folder`` with a small file at each relative name in ``names``."""
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(name)


def test_an_output_record_allows_replacing_exactly_what_the_command_wrote(tmp_path):
    out = tmp_path / 'out'
    write_files(out, ['a.png', 'sub/b.png'])
    record = OutputRecord(out, 'make-lr')
    assert record.replaceable() == 'it was not written by ramit make-lr (no .ramit-output.json listing its files)'
    record.write(['a.png', 'sub/b.png'])
    assert record.replaceable() is None
    (out / 'sub' / 'b.png').unlink()  # fewer files than recorded: still only what the command wrote
    assert record.replaceable() is None
    write_files(out, ['notes.txt'])
    assert record.replaceable() == "it holds files ramit make-lr did not write (notes.txt)"
    write_files(out, ['sub/c.png', 'sub/d.png', 'z.txt'])
    assert record.replaceable() == "it holds files ramit make-lr did not write (notes.txt, sub/c.png, sub/d.png ...)"
    assert OutputRecord(out, 'make-lmdb').replaceable() == 'it is the output of ramit make-lr, not of ramit make-lmdb'
    (out / OutputRecord.NAME).write_text('{not json')
    assert record.replaceable() == 'its .ramit-output.json is unreadable'


def test_replace_folder_swaps_in_the_new_folder_and_keeps_the_old_one_when_it_cannot(tmp_path, monkeypatch):
    output, staged = tmp_path / 'out', tmp_path / '.out.staged'
    write_files(output, ['old.png'])
    write_files(staged, ['new.png'])
    rename = Path.rename

    def failing_rename(self: Path, target) -> Path:
        """Path.rename, but the staged folder cannot be moved (e.g. a full disk for its directory entry)."""
        if self == staged:
            raise OSError(errno.ENOSPC, 'No space left on device')
        return rename(self, target)

    monkeypatch.setattr(Path, 'rename', failing_rename)
    with pytest.raises(OSError, match='No space left'):
        replace_folder(staged, output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['.out.staged', 'out']  # nothing else left behind
    assert [p.name for p in output.iterdir()] == ['old.png']
    monkeypatch.undo()
    replace_folder(staged, output)
    assert [p.name for p in tmp_path.iterdir()] == ['out'] and [p.name for p in output.iterdir()] == ['new.png']
