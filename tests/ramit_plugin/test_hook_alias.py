"""The torchvision alias basicsr 1.4.2 needs (ramit_hook.alias_functional_tensor): unmodified basicsr imports on
current torchvision once ramit_plugin is imported (or once the opt-in start-up hook is active: tests/ramit_cli/
test_hook.py), and not alone. Fresh interpreters: the alias must be in place before basicsr is first imported."""
import os
import subprocess
import sys
import textwrap
from typing import List

import pytest

import ramit_hook

LEGACY = ramit_hook.LEGACY_MODULE

AFTER_THE_PLUGIN = '''
    import ramit_plugin, basicsr
    from basicsr.data.degradations import rgb_to_grayscale
    from torchvision.transforms.functional import rgb_to_grayscale as current
    assert rgb_to_grayscale is current
    print(basicsr.__version__)
'''
ALONE = 'import basicsr'


def run_pythons(*codes: str) -> List[subprocess.CompletedProcess]:
    """Run each of ``codes`` in a fresh interpreter of this environment, side by side (each imports torch)."""
    procs = [subprocess.Popen([sys.executable, '-c', textwrap.dedent(code)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for code in codes]
    outputs = [p.communicate(timeout=300) for p in procs]
    return [subprocess.CompletedProcess(p.args, p.returncode, out, err) for p, (out, err) in zip(procs, outputs)]


def torchvision_ships_the_legacy_module() -> bool:
    """Whether this torchvision still has transforms/functional_tensor.py (then no alias is needed)."""
    import torchvision.transforms

    return os.path.isfile(os.path.join(os.path.dirname(torchvision.transforms.__file__), 'functional_tensor.py'))


def test_basicsr_imports_after_the_plugin_and_not_alone():
    plugin, alone = run_pythons(AFTER_THE_PLUGIN, ALONE)
    assert plugin.returncode == 0 and plugin.stdout.strip() == '1.4.2', plugin.stderr
    if torchvision_ships_the_legacy_module():
        pytest.skip(f'this torchvision still ships {LEGACY}: basicsr imports alone')
    if os.path.exists(ramit_hook.pth_path()):
        pytest.skip('`ramit hook install` was run in this environment: a plain `import basicsr` works by design')
    # Why the alias exists.
    assert alone.returncode != 0 and f"No module named '{LEGACY}'" in alone.stderr, alone.stderr[-2000:]


def test_the_alias_adds_only_the_missing_function():
    import ramit_plugin  # noqa: F401

    if torchvision_ships_the_legacy_module():
        pytest.skip(f'this torchvision still ships {LEGACY}')
    alias = sys.modules[LEGACY]
    assert [name for name in vars(alias) if not name.startswith('__')] == ['rgb_to_grayscale']
    ramit_hook.alias_functional_tensor()  # a second call changes nothing
    assert sys.modules[LEGACY] is alias


def test_without_torchvision_the_alias_does_nothing(monkeypatch):
    """An environment without torchvision: no alias and no error of ours (basicsr then names what is missing)."""
    monkeypatch.delitem(sys.modules, LEGACY, raising=False)
    monkeypatch.setitem(sys.modules, 'torchvision', None)
    ramit_hook.alias_functional_tensor()
    assert LEGACY not in sys.modules
