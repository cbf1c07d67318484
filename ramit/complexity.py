"""Parameter and multiply-add counts, as the paper reports model size and cost."""
import copy

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(net: nn.Module) -> int:
    """Number of learnable parameters (buffers such as relative_position_index excluded)."""
    return sum(p.numel() for p in net.parameters())


def count_macs(net: nn.Module, height: int, width: int, batch: int = 1) -> int:
    """Multiply-adds of one forward pass on a [batch, C, height, width] input.

    Every convolution and matrix product (both attentions included) is counted from its operand shapes, as
    the paper counts Mult-Adds; element-wise work (activations, norms, softmax) is not. The shapes are those
    executed by the reference path, i.e. after the network pads the input to a multiple of its window unit. It runs
    on the meta device, so it costs no real computation at any size.
    """
    meta_net = copy.deepcopy(net).to('meta').eval()
    if hasattr(meta_net, 'set_fast'):
        # The paper counts the architecture's operations; the fast path spends a few extra (norms via Gram
        # matrices), which are an implementation detail, so the count follows the reference path.
        meta_net.set_fast(False)
    in_chans = getattr(net, 'in_chans', 3)
    # In the network's own dtype: a float16 network on a float32 input would fail in its first convolution.
    x = torch.empty(batch, in_chans, height, width, device='meta', dtype=next(net.parameters()).dtype)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta_net(x)
    return counter.get_total_flops() // 2
