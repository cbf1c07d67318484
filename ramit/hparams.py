"""What a RAMiT network is made of, without torch: the published variants, the five tasks, every hyper-parameter,
the normalisation statistics, and the one function that resolves and checks them (``resolve_hparams``).

Two words are used throughout the package:

- *arguments*: what ``RAMiT(**arguments)`` takes: ``variant``, ``task``, ``upscale`` and any overrides;
- *hyper-parameters* (``hparams``): every value the network is built from, the arguments resolved.

The command line imports this module to offer its choices, so it imports nothing heavy.
"""
from typing import Dict, Tuple

# The four published variants (the authors' released code and checkpoints, github.com/rami0205/RAMiT). fuse_* are
# the MobiVari settings of the bottleneck and H-RAMi, which the slim variants set apart from the rest of the network.
VARIANTS: Dict[str, dict] = {
    'RAMiT': dict(dim=64, depths=(6, 4, 4, 6), mv_ver=2, exp_factor=1.2, expand_groups=4),
    'RAMiT-1': dict(dim=64, depths=(6, 4, 4, 6), mv_ver=1, exp_factor=1.2, expand_groups=4),
    'RAMiT-slimSR': dict(dim=48, depths=(8, 2, 2, 8), mv_ver=2, exp_factor=1.2, expand_groups=4,
                         fuse_exp_factor=2.0, fuse_expand_groups=1),
    'RAMiT-slimLLE': dict(dim=48, depths=(4, 2, 2, 4), mv_ver=2, exp_factor=1.2, expand_groups=4,
                          fuse_exp_factor=1.2, fuse_expand_groups=3),
}
SHARED_DEFAULTS = dict(num_heads=(4, 4, 4, 4), chsa_head_ratio=0.25, window_size=8, hidden_ratio=2.0,
                       qkv_bias=True, tail_mv=2, img_norm=True, attn_drop=0.0, proj_drop=0.0, drop_path=0.0)

# Channels of each task, and whether the reciprocal SP-SA/CH-SA helper (the paper's D-RAMiT) is on.
TASKS: Dict[str, dict] = {
    'sr': dict(in_chans=3, helper=True),
    'dn': dict(in_chans=3, helper=False),
    'graydn': dict(in_chans=1, helper=False),
    'lle': dict(in_chans=3, helper=True),
    'dr': dict(in_chans=3, helper=False),
}
TASK_NAMES = {'sr': 'SR', 'dn': 'colour denoising', 'graydn': 'gray denoising', 'lle': 'low-light enhancement',
              'dr': 'deraining'}
SR_SCALES = (2, 3, 4)

# Per-mode (mean, std) of the image normalisation; SR modes are keyed 'x2', 'x3', 'x4'.
NORM_STATS: Dict[str, Tuple[Tuple[float, ...], Tuple[float, ...]]] = {
    'x2': ((0.4485, 0.4375, 0.4045), (0.2397, 0.2290, 0.2389)),
    'x3': ((0.4485, 0.4375, 0.4045), (0.2373, 0.2265, 0.2367)),
    'x4': ((0.4485, 0.4375, 0.4045), (0.2352, 0.2244, 0.2349)),
    'dn': ((0.4775, 0.4515, 0.4047), (0.2442, 0.2367, 0.2457)),
    'graydn': ((0.4539,), (0.2326,)),
    'lle': ((0.1687, 0.1599, 0.1526), (0.1142, 0.1094, 0.1094)),
    'dr': ((0.5110, 0.5105, 0.4877), (0.2313, 0.2317, 0.2397)),
}

HYPER_PARAMETERS = ('dim', 'depths', 'num_heads', 'chsa_head_ratio', 'window_size', 'hidden_ratio', 'qkv_bias',
                    'mv_ver', 'exp_factor', 'expand_groups', 'fuse_exp_factor', 'fuse_expand_groups', 'tail_mv',
                    'helper', 'img_norm', 'in_chans', 'attn_drop', 'proj_drop', 'drop_path')
ARGUMENT_KEYS = ('variant', 'task', 'upscale') + HYPER_PARAMETERS
# Only training reads them; a checkpoint cannot tell them.
TRAINING_ONLY = ('attn_drop', 'proj_drop', 'drop_path')

# torch.compile modes the package offers ('auto': CUDA graphs on CUDA where shapes are fixed, else 'default').
COMPILE_MODES = ('auto', 'default', 'reduce-overhead', 'max-autotune', 'max-autotune-no-cudagraphs')


def norm_mode(task: str, upscale: int) -> str:
    """Key of NORM_STATS for a task ('x2'/'x3'/'x4' for SR)."""
    return f'x{upscale}' if task == 'sr' else task


def resolve_hparams(variant: str = 'RAMiT', task: str = 'sr', upscale=None, **overrides) -> dict:
    """Every hyper-parameter of a RAMiT network: variant and task defaults, then overrides; ValueError if invalid."""
    if variant not in VARIANTS:
        raise ValueError(f"RAMiT: unknown variant {variant!r}; valid variants: {', '.join(VARIANTS)}")
    if task not in TASKS:
        raise ValueError(f"RAMiT: unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    if task == 'sr':
        upscale = 2 if upscale is None else upscale
        if upscale not in SR_SCALES:
            raise ValueError(f"RAMiT: upscale={upscale!r} is invalid for task 'sr'; valid: 2, 3, 4")
    else:
        upscale = 1 if upscale is None else upscale
        if upscale != 1:
            raise ValueError(f"RAMiT: upscale={upscale!r} is invalid for task {task!r}; only task 'sr' "
                             'upscales (valid: 1)')
    unknown = sorted(set(overrides) - set(HYPER_PARAMETERS))
    if unknown:
        raise ValueError(f"RAMiT: unknown option(s) {', '.join(unknown)}; valid: {', '.join(HYPER_PARAMETERS)}")
    hparams = dict(SHARED_DEFAULTS, **VARIANTS[variant])
    hparams.update(TASKS[task])
    hparams.update(overrides)
    hparams.setdefault('fuse_exp_factor', hparams['exp_factor'])
    hparams.setdefault('fuse_expand_groups', hparams['expand_groups'])
    for key in ('depths', 'num_heads'):
        if not isinstance(hparams[key], (list, tuple)) or not all(_is_int(v) for v in hparams[key]):
            raise ValueError(f'RAMiT: {key}={hparams[key]!r} is invalid; give 4 positive integers, one per stage')
        hparams[key] = tuple(int(v) for v in hparams[key])
    _validate(hparams, task, upscale)
    return dict(hparams, variant=variant, task=task, upscale=upscale)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _validate(hp: dict, task: str, upscale: int) -> None:
    """Raise ValueError naming the option when hyper-parameters cannot form a network."""
    def fail(msg: str) -> None:
        raise ValueError(f'RAMiT: {msg}')

    if len(hp['depths']) != 4 or min(hp['depths']) < 1:
        fail(f"depths={hp['depths']} is invalid; RAMiT has 4 stages with at least 1 block each")
    if len(hp['num_heads']) != 4 or min(hp['num_heads']) < 1:
        fail(f"num_heads={hp['num_heads']} is invalid; give 4 positive head counts, one per stage")
    dim = hp['dim']
    if not _is_int(dim) or dim <= 0 or dim % 16:
        fail(f'dim={dim!r} is invalid; it must be a positive multiple of 16 (the bottleneck pixel-shuffles by 4)')
    for heads in hp['num_heads']:
        if dim % heads:
            fail(f"dim={dim} is not divisible by num_heads={hp['num_heads']}")
    for key in ('chsa_head_ratio', 'exp_factor', 'fuse_exp_factor', 'hidden_ratio', 'attn_drop', 'proj_drop',
                'drop_path'):
        if not _is_number(hp[key]):
            fail(f'{key}={hp[key]!r} is invalid; valid: a number')
    if not 0.0 <= hp['chsa_head_ratio'] <= 1.0:
        fail(f"chsa_head_ratio={hp['chsa_head_ratio']} is invalid; valid: 0.0 to 1.0")
    if not _is_int(hp['window_size']) or hp['window_size'] < 2:
        fail(f"window_size={hp['window_size']!r} is invalid; valid: an integer >= 2")
    if hp['mv_ver'] not in (1, 2):
        fail(f"mv_ver={hp['mv_ver']!r} is invalid; valid: 1, 2")
    for key in ('expand_groups', 'fuse_expand_groups', 'tail_mv'):
        if not _is_int(hp[key]) or hp[key] < (1 if key != 'tail_mv' else 0):
            fail(f'{key}={hp[key]!r} is invalid; valid: a non-negative integer' if key == 'tail_mv'
                 else f'{key}={hp[key]!r} is invalid; valid: a positive integer')
    for key in ('exp_factor', 'fuse_exp_factor', 'hidden_ratio'):
        if hp[key] <= 0:
            fail(f'{key}={hp[key]} is invalid; valid: a positive number')
    for key in ('attn_drop', 'proj_drop', 'drop_path'):
        if not 0.0 <= hp[key] < 1.0:
            fail(f'{key}={hp[key]} is invalid; valid: 0.0 <= p < 1.0')
    for key in ('qkv_bias', 'helper', 'img_norm'):
        if not isinstance(hp[key], bool):
            fail(f'{key}={hp[key]!r} is invalid; valid: true or false')
    if hp['mv_ver'] == 2:
        # MobiVari v2's expansion is a grouped conv, so its groups must divide every MobiVari input width.
        fused = (dim + dim // 4 + dim // 16, 2 * dim + dim // 4 + dim // 16)
        for key, widths in (('expand_groups', (dim, 4 * dim)), ('fuse_expand_groups', fused)):
            for width in widths:
                if width % hp[key]:
                    fail(f'{key}={hp[key]} does not divide a MobiVari input of {width} channels (dim={dim}); '
                         f'choose groups dividing {", ".join(map(str, widths))}')
    if not _is_int(hp['in_chans']) or hp['in_chans'] < 1:
        fail(f"in_chans={hp['in_chans']!r} is invalid; valid: a positive integer")
    if hp['in_chans'] not in (1, 3) and hp['img_norm']:
        fail(f"in_chans={hp['in_chans']} has no normalisation constants; use 1 or 3, or img_norm=False")
    if hp['img_norm'] and len(NORM_STATS[norm_mode(task, upscale)][0]) != hp['in_chans']:
        fail(f"in_chans={hp['in_chans']} does not match task {task!r} "
             f"({len(NORM_STATS[norm_mode(task, upscale)][0])} channel(s)); "
             f"use task 'graydn' for 1 channel or set img_norm=False")


def minimal_arguments(hparams: dict) -> dict:
    """The ``RAMiT(...)`` arguments with the fewest overrides that give ``hparams`` (the training-only rates are
    left out: no checkpoint can tell them)."""
    variant, task, upscale = hparams['variant'], hparams['task'], hparams['upscale']
    base = resolve_hparams(variant, task, upscale)
    want = {k: hparams[k] for k in HYPER_PARAMETERS if k not in TRAINING_ONLY and k in hparams}
    overrides = {k: v for k, v in want.items() if not k.startswith('fuse_') and v != base[k]}
    for key in ('fuse_exp_factor', 'fuse_expand_groups'):
        # resolve_hparams lets fuse_* follow exp_* unless the variant sets them.
        follows = VARIANTS[variant].get(key, overrides.get(key[len('fuse_'):], base[key]))
        if key in want and want[key] != follows:
            overrides[key] = want[key]
    return dict(variant=variant, task=task, upscale=upscale, **overrides)


def describe(arguments: dict) -> str:
    """One line such as "RAMiT-1 x2 SR (3 channels)", plus the overrides of a custom network."""
    hparams = resolve_hparams(**arguments)
    task = f"x{hparams['upscale']} SR" if hparams['task'] == 'sr' else TASK_NAMES[hparams['task']]
    chans = hparams['in_chans']
    overrides = minimal_arguments(hparams)
    extra = ', '.join(f'{k}={overrides[k]}' for k in HYPER_PARAMETERS if k in overrides)
    return (f"{hparams['variant']} {task} ({chans} channel{'s' if chans != 1 else ''})"
            + (f' with {extra}' if extra else ''))
