"""RAMiT's start-up hook (opt-in) and the torchvision alias basicsr 1.4.2 needs; the standard library only.

``ramit hook install`` writes ``ramit_hook.pth`` into the environment's site-packages. At every interpreter start
Python then runs ``import ramit_hook; ramit_hook.activate()``, which only puts a finder in front of
``sys.meta_path`` (this module imports nothing else, so an interpreter that never imports spandrel or basicsr
pays well under a millisecond). The finder acts on two imports, and only when they happen:

- ``spandrel``: once spandrel has loaded, ``ramit_spandrel`` is imported, so RAMiT is in spandrel's registry for
  chaiNNer and every other spandrel host, with nothing to add to their code;
- ``basicsr``: before basicsr loads, ``torchvision.transforms.functional_tensor`` (which basicsr 1.4.2 imports and
  torchvision >= 0.17 no longer ships) is registered as an alias, so a plain ``import basicsr`` works.

``ramit hook remove`` deletes the file (a file left behind by uninstalling the package first does nothing: its
import fails quietly). ``import ramit_plugin`` applies the alias itself, hook or not.
"""
import os
import sys
from typing import Optional

LEGACY_MODULE = 'torchvision.transforms.functional_tensor'
PTH_NAME = 'ramit_hook.pth'
# A .pth line starting with 'import' is executed at start-up; the try keeps a left-behind file from ever failing.
PTH_LINE = 'import sys; exec("try:\\n import ramit_hook; ramit_hook.activate()\\nexcept ImportError:\\n pass")\n'


def alias_functional_tensor() -> None:
    """Register torchvision.transforms.functional_tensor (holding ``rgb_to_grayscale``, the one function basicsr
    takes from it) if this torchvision no longer ships it."""
    import importlib.util
    import types

    # Without torchvision there is nothing to alias: basicsr's own import then names the missing package.
    if LEGACY_MODULE in sys.modules or importlib.util.find_spec('torchvision') is None \
            or importlib.util.find_spec(LEGACY_MODULE) is not None:
        return
    from torchvision.transforms.functional import rgb_to_grayscale

    alias = types.ModuleType(LEGACY_MODULE, 'Alias added by ramit_hook for basicsr 1.4.2.')
    alias.rgb_to_grayscale = rgb_to_grayscale
    sys.modules[LEGACY_MODULE] = alias


class _ThenRegister:
    """spandrel's own loader, importing ramit_spandrel once spandrel has been executed."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        try:
            __import__('ramit_spandrel')
        except Exception as err:  # never break the application's own import of spandrel
            print(f'ramit_hook: RAMiT was not registered in spandrel ({type(err).__name__}: {err})', file=sys.stderr)

    def __getattr__(self, name: str):
        return getattr(self.loader, name)


class StartupFinder:
    """A sys.meta_path finder that finds nothing itself: it prepares the imports of basicsr and spandrel."""

    def __init__(self) -> None:
        self.busy = False

    def find_spec(self, name: str, path=None, target=None):
        """None, after preparing ``basicsr``; for ``spandrel``, its usual spec with a loader that then registers."""
        if name == 'basicsr':
            alias_functional_tensor()
            return None
        if name != 'spandrel' or self.busy:
            return None
        import importlib.util

        self.busy = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.busy = False
        if spec is None or spec.loader is None:
            return None
        spec.loader = _ThenRegister(spec.loader)
        return spec


def activate() -> None:
    """Put the finder in front of sys.meta_path once (what the .pth file runs at start-up)."""
    if not any(isinstance(f, StartupFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, StartupFinder())


def pth_path(site_dir: Optional[str] = None) -> str:
    """Where ``ramit hook install`` writes the .pth file: this environment's site-packages (purelib)."""
    import sysconfig

    return os.path.join(site_dir or sysconfig.get_paths()['purelib'], PTH_NAME)


def install(site_dir: Optional[str] = None) -> str:
    """Write the .pth file (atomically); returns its path."""
    path = pth_path(site_dir)
    tmp = f'{path}.{os.getpid()}.part'
    with open(tmp, 'w') as f:
        f.write(PTH_LINE)
    os.replace(tmp, path)
    return path


def remove(site_dir: Optional[str] = None) -> Optional[str]:
    """Delete the .pth file; its path, or None when it was not installed."""
    path = pth_path(site_dir)
    if not os.path.exists(path):
        return None
    os.remove(path)
    return path
