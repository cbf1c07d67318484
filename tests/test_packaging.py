"""The wheel and sdist carry the package, the front end, the option files and both console scripts."""
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ('setup.py', 'README.md', 'MANIFEST.in', 'ramit_plugin', 'ramit_cli', 'options', 'tests')


def test_wheel_and_sdist_carry_option_files_and_entry_points(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns('__pycache__'))
        else:
            shutil.copy(REPO / name, src / name)
    options = sorted(p.name for p in (REPO / 'options').iterdir() if p.suffix in ('.yml', '.py'))
    assert options, 'the options folder is empty'
    subprocess.run([sys.executable, '-m', 'build', '--no-isolation', '--wheel', '--sdist', '--outdir',
                    str(tmp_path / 'dist'), str(src)], check=True, capture_output=True, timeout=600)

    wheel = zipfile.ZipFile(next((tmp_path / 'dist').glob('ramit_plugin-*.whl')))
    names = wheel.namelist()
    assert sorted(n.split('/')[-1] for n in names if n.startswith('ramit_plugin/options/')) == options
    assert 'ramit_plugin/archs/ramit_arch.py' in names and 'ramit_cli/main.py' in names
    entry_points = wheel.read(next(n for n in names if n.endswith('entry_points.txt'))).decode()
    assert 'ramit = ramit_cli.main:main' in entry_points
    assert 'basicsr = ramit_cli.main:main' in entry_points
    metadata = wheel.read(next(n for n in names if n.endswith('METADATA'))).decode()
    assert 'Requires-Dist: basicsr==1.4.2' in metadata and 'einops' not in metadata

    sdist = tarfile.open(next((tmp_path / 'dist').glob('ramit_plugin-*.tar.gz')))
    in_sdist = sorted(Path(n).name for n in sdist.getnames() if Path(n).parent.name == 'options')
    assert in_sdist == options
