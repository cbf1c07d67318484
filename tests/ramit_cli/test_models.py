"""`ramit models`: every published name with its task, variant and scale, and whether it is cached."""
import shutil


def test_lists_all_and_marks_cached(reference_dir, tmp_path, monkeypatch, capsys, ramit):
    monkeypatch.setenv('RAMIT_CACHE', str(tmp_path))
    monkeypatch.setenv('RAMIT_URL_BASE', 'https://mirror.example/ramit')
    shutil.copy(reference_dir / 'weights' / 'RAMiT-1_X3.pth', tmp_path)
    (tmp_path / 'RAMiT-1_X4.pth').write_bytes(b'not the published file')
    assert ramit('models') == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ['name', 'variant', 'task', 'scale', 'cached', 'description']
    rows = {line.split()[0]: line.split() for line in lines[1:-1]}
    assert len(rows) == 15
    assert rows['RAMiT-1_X3'][:5] == ['RAMiT-1_X3', 'RAMiT-1', 'sr', '3', 'yes']
    assert rows['RAMiT-1_X4'][4] == 'no'  # present but with the wrong blob id
    assert rows['RAMiT_GDN'][:5] == ['RAMiT_GDN', 'RAMiT', 'graydn', '1', 'no']
    assert 'RAMiT gray denoising (1 channel)' in ' '.join(rows['RAMiT_GDN'])
    assert lines[-1].startswith(f'cache: {tmp_path} ')
    assert 'source: https://mirror.example/ramit/<name>.pth' in lines[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ['RAMiT-1_X3.pth', 'RAMiT-1_X4.pth']  # nothing fetched
