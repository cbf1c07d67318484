"""`ramit convert`: any RAMiT checkpoint as .safetensors with its network description, so no flag is needed later."""
import argparse

from ramit.checkpoint import SAFETENSORS_SUFFIX, network_description, write_safetensors
from ramit.errors import OptionError
from ramit.hub import resolve_weights
from ramit.inference import load_network


def run(args: argparse.Namespace, prog: str) -> int:
    """Read IN (flags settle or check what its shapes leave open), write OUT.safetensors atomically."""
    out = args.output
    if out.suffix.lower() != SAFETENSORS_SUFFIX:
        raise OptionError(f'{out}: the output file name must end with {SAFETENSORS_SUFFIX}')
    if out.is_dir():
        raise OptionError(f'{out}: is a folder; give the file to write')
    if out.exists() and not args.overwrite:
        raise OptionError(f'{out} exists; --overwrite replaces it')
    if not out.parent.is_dir():
        raise OptionError(f'{out}: folder {out.parent} does not exist')
    weights, published = resolve_weights(args.input, option='')
    net = load_network(weights, args.variant, args.task, args.scale, published)
    write_safetensors(out, net.state_dict(), network_description(net))
    print(f'{net.describe()}: {weights} -> {out}')
    return 0
