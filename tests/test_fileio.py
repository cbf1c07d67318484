"""fileio: the destination only ever holds a complete result (umask modes), write failures and locks in one line."""
import os
import stat

import pytest

from ramit_plugin.fileio import atomic_output, hidden_folder


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


def test_a_full_disk_during_a_write_names_the_destination_and_leaves_nothing(tmp_path):
    import errno

    from ramit_plugin.fileio import DiskFullError
    dest = tmp_path / 'out.bin'
    dest.write_bytes(b'old')
    with pytest.raises(DiskFullError) as err, atomic_output(dest) as tmp:
        open(tmp, 'wb').write(b'half')
        raise OSError(errno.ENOSPC, 'No space left on device')
    assert str(err.value) == f'{dest}: cannot be written (No space left on device); nothing was left half-written'
    assert err.value.exit_code == 1
    assert dest.read_bytes() == b'old' and [p.name for p in tmp_path.iterdir()] == ['out.bin']


def test_an_output_under_a_file_is_named(tmp_path):
    from ramit_plugin.fileio import OutputError, make_folder
    (tmp_path / 'file').write_text('x')
    with pytest.raises(OutputError, match=f'^{tmp_path}/file/out.bin: cannot be written \\(Not a directory'):
        with atomic_output(tmp_path / 'file' / 'out.bin'):
            pass
    with pytest.raises(OutputError, match='cannot be created as a folder: a file of that name is in the way'):
        make_folder(tmp_path / 'file')


def test_only_our_stale_temporary_files_are_removed(tmp_path):
    from ramit_plugin.fileio import remove_stale_parts
    names = ['.net_g_5.pth.0123456789ab.part', 'net_g_5.pth', '.notes.part', 'x.part', '.a.0123456789ab.partial']
    for name in names:
        (tmp_path / name).write_bytes(b'')
    assert remove_stale_parts(tmp_path) == ['.net_g_5.pth.0123456789ab.part']
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[1:])


def test_a_lock_held_by_another_process_is_refused_and_freed_when_it_dies(tmp_path, lock_holder):
    from ramit_plugin.fileio import LockedError, exclusive_lock
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

    from ramit_plugin.data.errors import DatasetError

    class Broken(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            raise DatasetError(f'dataset x: file {index}.png is damaged')

    with pytest.raises(DatasetError) as err:
        next(iter(DataLoader(Broken(), num_workers=1)))
    assert str(err.value) == 'dataset x: file 0.png is damaged'
