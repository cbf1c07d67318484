"""`ramit hook install|remove|status`: the opt-in start-up hook that registers RAMiT in spandrel (chaiNNer and any
other spandrel host) when an application imports spandrel, and lets a plain `import basicsr` work (``ramit_hook``)."""
import argparse
import os

import ramit_hook


def run(args: argparse.Namespace, prog: str) -> int:
    """Install, remove or show the .pth file of this environment."""
    if args.action == 'install':
        print(f'{prog}: installed {ramit_hook.install()}: every Python start in this environment registers RAMiT in '
              f'spandrel when spandrel is imported (remove: ramit hook remove)')
    elif args.action == 'remove':
        removed = ramit_hook.remove()
        print(f'{prog}: removed {removed}' if removed else f'{prog}: not installed ({ramit_hook.pth_path()})')
    else:
        path = ramit_hook.pth_path()
        print(f'{prog}: {"installed" if os.path.exists(path) else "not installed"} ({path})')
    return 0
