"""`ramit hook install|remove|status`: the opt-in start-up hook (a .pth file). In a fresh interpreter that has it,
`import spandrel` alone registers RAMiT (no training framework imported) and a plain `import basicsr` works; the hook
itself imports nothing heavy at start-up. Installed into a temporary site folder, never this environment's."""
import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path
from typing import Optional

import pytest

import ramit_hook

FRAMEWORKS = ('basicsr', 'mmengine', 'ramit_plugin')
HEAVY = ('torch', 'spandrel', 'numpy')


@pytest.fixture
def site_dir(tmp_path, monkeypatch) -> Path:
    """A temporary site-packages folder that `ramit hook` takes for this environment's (sysconfig's purelib)."""
    site = tmp_path / 'site-packages'
    site.mkdir()
    real = sysconfig.get_paths
    monkeypatch.setattr(sysconfig, 'get_paths', lambda *args, **kwargs: {**real(*args, **kwargs),
                                                                         'purelib': str(site)})
    assert ramit_hook.pth_path() == str(site / ramit_hook.PTH_NAME)  # never the real environment's
    return site


def fresh_python(code: str, site: Optional[Path] = None) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter; with ``site``, that folder is added as a site folder first (its .pth files
    run, as they do at start-up for site-packages)."""
    prelude = f'import site; site.addsitedir({str(site)!r})\n' if site else ''
    return subprocess.run([sys.executable, '-c', prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, OMP_NUM_THREADS='1'))


def test_install_status_and_remove(site_dir, capsys, ramit):
    pth = site_dir / ramit_hook.PTH_NAME
    assert ramit('hook', 'status') == 0
    assert capsys.readouterr().out == f'ramit hook: not installed ({pth})\n'
    assert ramit('hook', 'install') == 0
    assert capsys.readouterr().out.startswith(f'ramit hook: installed {pth}: ')
    assert pth.read_text() == ramit_hook.PTH_LINE and sorted(p.name for p in site_dir.iterdir()) == [pth.name]
    assert ramit('hook', 'status') == 0
    assert capsys.readouterr().out == f'ramit hook: installed ({pth})\n'
    assert ramit('hook', 'remove') == 0
    assert capsys.readouterr().out == f'ramit hook: removed {pth}\n'
    assert list(site_dir.iterdir()) == []
    assert ramit('hook', 'remove') == 0
    assert capsys.readouterr().out == f'ramit hook: not installed ({pth})\n'


def test_with_the_hook_import_spandrel_registers_ramit_and_import_basicsr_works(site_dir, ramit):
    assert ramit('hook', 'install') == 0
    proc = fresh_python(f'''
        import json, sys
        report = {{}}
        # Start-up: the finder is in place, and nothing heavy was imported for it.
        import ramit_hook
        report['active'] = any(isinstance(f, ramit_hook.StartupFinder) for f in sys.meta_path)
        report['heavy at start-up'] = sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})
        import spandrel
        arch = spandrel.MAIN_REGISTRY.get('RAMiT')
        report['registered by'] = type(arch.architecture).__module__ if arch else None
        report['frameworks'] = sorted({{m.split('.')[0] for m in sys.modules}} & {set(FRAMEWORKS)!r})
        import basicsr
        from basicsr.data.degradations import rgb_to_grayscale
        report['basicsr'] = basicsr.__version__
        report['plugin imported'] = sorted({{m.split('.')[0] for m in sys.modules}} & {{'ramit_plugin'}})
        print(json.dumps(report))
    ''', site_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout) == {'active': True, 'heavy at start-up': [], 'registered by': 'ramit_spandrel',
                                       'frameworks': [], 'basicsr': '1.4.2', 'plugin imported': []}
    # Removed: a fresh interpreter has no finder and spandrel knows no RAMiT.
    assert ramit('hook', 'remove') == 0
    proc = fresh_python('''
        import sys, spandrel
        print('ramit_hook' in sys.modules, spandrel.MAIN_REGISTRY.get('RAMiT'))
    ''', site_dir)
    assert proc.returncode == 0 and proc.stdout.split() == ['False', 'None'], proc.stderr[-3000:]


def test_a_hook_left_behind_by_an_uninstalled_package_does_nothing(tmp_path):
    """The .pth line of a package that is gone fails quietly: the interpreter starts as before."""
    ramit_hook.install(str(tmp_path))
    proc = fresh_python("import sys; sys.modules['ramit_hook'] = None\n"
                        f'import site; site.addsitedir({str(tmp_path)!r}); print("started")')
    assert proc.returncode == 0 and proc.stdout == 'started\n' and proc.stderr == ''
    assert ramit_hook.remove(str(tmp_path)) == str(tmp_path / ramit_hook.PTH_NAME)
    assert list(tmp_path.iterdir()) == []
