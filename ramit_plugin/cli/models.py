"""`ramit models`: the authors' published checkpoints, what they hold and whether they are cached."""
import argparse

from ..archs.ramit_arch import describe_config
from ..hub import PUBLISHED, cache_dir, is_cached, url_base


def run(args: argparse.Namespace, prog: str) -> int:
    """Print one line per published checkpoint: name, variant, task, scale, cached or not."""
    width = max(len(m.name) for m in PUBLISHED.values())
    print(f"{'name':<{width}}  {'variant':<13}  {'task':<6}  scale  cached  description")
    for m in PUBLISHED.values():
        chans = 1 if m.task == 'graydn' else 3
        desc = describe_config(dict(variant=m.variant, task=m.task, upscale=m.scale, in_chans=chans))
        print(f"{m.name:<{width}}  {m.variant:<13}  {m.task:<6}  {m.scale:>5}  {'yes' if is_cached(m) else 'no':>6}"
              f'  {desc}')
    print(f'cache: {cache_dir()} (set RAMIT_CACHE to change); source: {url_base()}/<name>.pth')
    return 0
