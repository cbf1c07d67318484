"""atomic_output and hidden_folder: the destination only ever holds a complete result, with the umask's modes."""
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
