"""The wheel and sdist, built from pyproject.toml alone (no setup.py, no pytest.ini), carry every package, the start-up
hook module, the option files, the check photos and both console scripts."""
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ('pyproject.toml', 'README.md', 'MANIFEST.in', 'LICENSE', 'docs', 'ramit', 'ramit_cli', 'ramit_plugin',
           'ramit_spandrel', 'ramit_hook.py', 'options', 'tests', 'tools', 'integrations')
PACKAGES = ('ramit', 'ramit_cli', 'ramit_plugin', 'ramit_spandrel')


def test_pyproject_is_the_only_build_and_test_description(pytestconfig):
    assert pytestconfig.inipath == REPO / 'pyproject.toml'  # pytest read its settings there
    assert not (REPO / 'setup.py').exists() and not (REPO / 'setup.cfg').exists()
    assert not (REPO / 'pytest.ini').exists() and not (REPO / 'tox.ini').exists()
    assert '[build-system]' in (REPO / 'pyproject.toml').read_text()


def test_wheel_and_sdist_carry_packages_option_files_photos_and_entry_points(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns('__pycache__', '*.egg-info'))
        else:
            shutil.copy(REPO / name, src / name)
    options = sorted(p.name for p in (REPO / 'options').iterdir() if p.suffix in ('.yml', '.py'))
    photos = sorted(p.name for p in (REPO / 'ramit' / 'photos').glob('*.png'))
    assert options and photos
    proc = subprocess.run([sys.executable, '-m', 'build', '--no-isolation', '--wheel', '--sdist', '--outdir',
                           str(tmp_path / 'dist'), str(src)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    wheel = zipfile.ZipFile(next((tmp_path / 'dist').glob('ramit_plugin-*.whl')))
    names = wheel.namelist()
    assert sorted(n.split('/')[-1] for n in names if n.startswith('ramit_plugin/options/')) == options
    assert sorted(n.split('/')[-1] for n in names if n.startswith('ramit/photos/')) == photos
    for module in ('ramit/__init__.py', 'ramit/network.py', 'ramit/export.py', 'ramit_cli/main.py',
                   'ramit_cli/hook.py', 'ramit_plugin/archs/ramit_arch.py', 'ramit_plugin/mm/restorer.py',
                   'ramit_spandrel/__init__.py', 'ramit_hook.py'):
        assert module in names, module
    # Only the packages and the hook module: no tests, tools or integrations inside site-packages.
    top = {n.split('/')[0] for n in names if not n.split('/')[0].endswith('.dist-info')}
    assert top == {*PACKAGES, 'ramit_hook.py'}
    entry_points = wheel.read(next(n for n in names if n.endswith('entry_points.txt'))).decode()
    assert 'ramit = ramit_cli.main:main' in entry_points
    assert 'basicsr = ramit_cli.main:main' in entry_points
    metadata = wheel.read(next(n for n in names if n.endswith('METADATA'))).decode()
    assert 'Requires-Dist: basicsr==1.4.2' in metadata and 'einops' not in metadata
    assert 'Provides-Extra: spandrel' in metadata and 'Provides-Extra: export' in metadata

    sdist = tarfile.open(next((tmp_path / 'dist').glob('ramit_plugin-*.tar.gz')))
    members = [Path(n) for n in sdist.getnames()]
    assert sorted(p.name for p in members if p.parent.name == 'options') == options
    assert sorted(p.name for p in members if p.parent.as_posix().endswith('ramit/photos')) == photos
    relative = {p.relative_to(members[0].parts[0]).as_posix() for p in members if len(p.parts) > 1}
    assert {'pyproject.toml', 'integrations/comfyui/ramit_comfyui/__init__.py', 'ramit_hook.py'} <= relative
    assert not {'setup.py', 'pytest.ini'} & relative
