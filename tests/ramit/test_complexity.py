"""Parameter and multiply-add counts against an independent per-operation count."""
import torch
import torch.nn as nn

from ramit import RAMiT, count_macs, count_params
from ramit.network import CHSA, SPSA
from tests.ramit.conftest import TINY


def hooked_macs(net: RAMiT, h: int, w: int) -> int:
    """Conv MACs from hooks plus the two attention matmuls of every SP-SA/CH-SA call, by hand."""
    total = 0

    def conv_hook(m: nn.Conv2d, inputs: tuple, out: torch.Tensor) -> None:
        """Output pixels x input channels per group x kernel taps."""
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1]
        total += out.numel() * (m.in_channels // m.groups) * k

    def sp_hook(m: SPSA, inputs: tuple, out: torch.Tensor) -> None:
        """q k^T and attn v in every window."""
        nonlocal total
        b, heads, c3, hh, ww = inputs[0].shape
        tokens = m.window_size ** 2
        windows = b * (hh // m.window_size) * (ww // m.window_size)
        total += 2 * windows * heads * tokens * tokens * (c3 // 3)  # q k^T and attn v

    def ch_hook(m: CHSA, inputs: tuple, out: torch.Tensor) -> None:
        """The c x c attention over all pixels, both products."""
        nonlocal total
        b, heads, c3, hh, ww = inputs[0].shape
        total += 2 * b * heads * (c3 // 3) ** 2 * hh * ww

    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(conv_hook)
        elif isinstance(m, SPSA):
            m.register_forward_hook(sp_hook)
        elif isinstance(m, CHSA):
            m.register_forward_hook(ch_hook)
    with torch.no_grad():
        net.eval().set_fast(False)(torch.rand(1, net.in_chans, h, w))
    return total


def test_macs_equal_a_hand_count_of_convolutions_and_attention():
    for net in (RAMiT('RAMiT-1', 'sr', 3, **TINY), RAMiT('RAMiT', 'graydn', fuse_expand_groups=1, **TINY)):
        assert count_macs(net, 20, 28) == hooked_macs(net, 20, 28)


def test_macs_count_the_padded_size_and_scale_with_batch():
    net = RAMiT('RAMiT-slimSR', 'sr', 2, **TINY)
    assert count_macs(net, 17, 30) == count_macs(net, 32, 32)  # the network pads to a multiple of 16 here
    assert count_macs(net, 16, 16, batch=3) == 3 * count_macs(net, 16, 16)


def test_counting_leaves_the_network_untouched():
    net = RAMiT('RAMiT-1', 'sr', 2, **TINY)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    count_macs(net, 64, 64)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert count_params(net) == sum(p.numel() for p in net.parameters()) and next(net.parameters()).device.type == 'cpu'


def test_macs_do_not_depend_on_dtype():
    """`ramit bench --half` counts a float16 network: the same multiply-adds as in float32."""
    net = RAMiT('RAMiT-slimLLE', 'lle')
    assert count_macs(net.half(), 40, 56) == count_macs(net.float(), 40, 56) > 0
