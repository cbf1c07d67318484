"""atomic_output: the destination only ever holds a complete file."""
import pytest

from ramit_plugin.fileio import atomic_output


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
