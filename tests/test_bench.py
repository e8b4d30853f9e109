"""Bench helpers: the FLOP count against a hand count, and no peak fraction without a known GPU."""

from __future__ import annotations

import torch

from sr_lib.bench import bf16_peak, count_flops


def test_flops_of_a_convolution_match_the_hand_count():
    conv = torch.nn.Conv2d(1, 4, kernel_size=3, padding=1, bias=False)
    x = torch.randn(2, 1, 8, 8, requires_grad=True)
    forward = 2 * (2 * 4 * 8 * 8) * 1 * 9  # 2 per multiply-add, per output value, per input channel and tap
    assert count_flops(lambda: conv(x)) == forward
    # backward: the gradient of the input and of the weight cost one forward each
    assert count_flops(lambda: conv(x).sum().backward()) == 3 * forward


def test_no_peak_fraction_on_the_cpu():
    assert bf16_peak(torch.device("cpu")) is None
