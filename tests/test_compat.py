"""The compatibility shim: unmodified basicsr 1.4.2 imports on current torchvision once ramit_plugin is imported."""
import importlib.util
import subprocess
import sys
import textwrap

import pytest

LEGACY = 'torchvision.transforms.functional_tensor'


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True, text=True, timeout=300)


def test_basicsr_imports_after_the_plugin_in_a_fresh_interpreter():
    proc = run_python('''
        import ramit_plugin, basicsr
        from basicsr.data.degradations import rgb_to_grayscale
        from torchvision.transforms.functional import rgb_to_grayscale as current
        assert rgb_to_grayscale is current
        print(basicsr.__version__)
    ''')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == '1.4.2'


def test_the_shim_adds_only_the_missing_function():
    import ramit_plugin  # noqa: F401

    shim = sys.modules[LEGACY]
    assert [name for name in vars(shim) if not name.startswith('__')] == ['rgb_to_grayscale']


def test_basicsr_alone_fails_on_this_torchvision_which_is_why_the_shim_exists():
    proc = run_python(f'''
        import importlib.util
        raise SystemExit(0 if importlib.util.find_spec({LEGACY!r}) is None else 3)
    ''')
    if proc.returncode == 3:
        pytest.skip(f'this torchvision still ships {LEGACY}')
    proc = run_python('import basicsr')
    assert proc.returncode != 0 and f"No module named '{LEGACY}'" in proc.stderr
    assert importlib.util.find_spec('ramit_plugin.compat') is not None
