"""`ramit models`: the authors' published checkpoints, what they hold and whether they are cached."""
import argparse

from ramit.hparams import describe
from ramit.hub import PUBLISHED, cache_dir, is_cached, url_base


def run(args: argparse.Namespace, prog: str) -> int:
    """Print one line per published checkpoint: name, variant, task, scale, cached or not."""
    cache = cache_dir()  # a cache that is a file is refused before the table starts
    width = max(len(m.name) for m in PUBLISHED.values())
    print(f"{'name':<{width}}  {'variant':<13}  {'task':<6}  scale  cached  description")
    for m in PUBLISHED.values():
        desc = describe(dict(variant=m.variant, task=m.task, upscale=m.scale))
        print(f"{m.name:<{width}}  {m.variant:<13}  {m.task:<6}  {m.scale:>5}  {'yes' if is_cached(m) else 'no':>6}"
              f'  {desc}')
    print(f'cache: {cache} (set RAMIT_CACHE to change; a file put there under its name is used); '
          f'source: {url_base()}/<name>.pth (set RAMIT_URL_BASE for a mirror)')
    return 0
