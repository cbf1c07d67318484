"""`ramit convert`: any RAMiT checkpoint as .safetensors with its network description, so no flag is needed later."""
import argparse

from ..checkpoint import SAFETENSORS_SUFFIX, config_metadata, describe, network_config, write_safetensors
from ..errors import OptionError
from ..hub import resolve_weights
from ..inference import build_network


def run(args: argparse.Namespace, prog: str) -> int:
    """Read IN (flags settle or check what its shapes leave open), write OUT.safetensors atomically."""
    out = args.output
    if out.suffix.lower() != SAFETENSORS_SUFFIX:
        raise OptionError(f'{out}: the output file name must end with {SAFETENSORS_SUFFIX}')
    if out.exists() and not args.overwrite:
        raise OptionError(f'{out} exists; --overwrite replaces it')
    if not out.parent.is_dir():
        raise OptionError(f'{out}: folder {out.parent} does not exist')
    weights, published = resolve_weights(args.input, option='')
    net = build_network(weights, args.variant, args.task, args.scale, published)
    write_safetensors(out, net.state_dict(), config_metadata(net))
    print(f'{describe(network_config(net))}: {weights} -> {out}')
    return 0
