"""Lesion networks: small U-Nets that output per-class centre heatmaps and a box size at 1/2 resolution.

Output of every model: ``(N, C + 2, H / stride, W / stride)`` float32 where the first C channels are
sigmoid heatmaps in [0, 1] (one per lesion class, peaks at lesion centres) and the last two are
``log(w), log(h)`` of the lesion box in input pixels. One dict and one factory: ``create_model``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class _Block(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(_conv_bn_relu(cin, cout), _conv_bn_relu(cout, cout))


class LesionUNet(nn.Module):
    """A 4-level U-Net behind a stride-2 stem.

    Args:
        n_classes: heatmap channels.
        base: channels at the first level (doubled at each level down).
        stem_stride: 2 runs the U-Net at half the input resolution (the output is at that resolution too).
    """

    def __init__(self, n_classes: int = 3, base: int = 16, stem_stride: int = 2) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.output_stride = stem_stride
        #: input sides must be multiples of this: the stem's stride times the three 2x poolings.
        self.input_multiple = stem_stride * 8
        c = [base, base * 2, base * 4, base * 8]
        self.stem = _conv_bn_relu(3, c[0], stride=stem_stride)
        self.enc0 = _Block(c[0], c[0])
        self.enc1 = _Block(c[0], c[1])
        self.enc2 = _Block(c[1], c[2])
        self.enc3 = _Block(c[2], c[3])
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.dec2 = _Block(c[3] + c[2], c[2])
        self.dec1 = _Block(c[2] + c[1], c[1])
        self.dec0 = _Block(c[1] + c[0], c[0])
        self.head_hm = nn.Sequential(_conv_bn_relu(c[0], c[0]), nn.Conv2d(c[0], n_classes, 1))
        self.head_size = nn.Sequential(_conv_bn_relu(c[0], c[0]), nn.Conv2d(c[0], 2, 1))
        # Focal-loss prior: start with heatmaps near 0.01 so early training is stable (CenterNet practice).
        nn.init.constant_(self.head_hm[-1].bias, -4.6)  # type: ignore[arg-type]

    def last_decoder_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the last decoder block reads: the upsampled deeper features beside the first level's."""
        e0 = self.enc0(self.stem(x))
        e1 = self.enc1(self.pool(e0))
        e2 = self.enc2(self.pool(e1))
        e3 = self.enc3(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up(e3), e2], 1))
        d1 = self.dec1(torch.cat([self.up(d2), e1], 1))
        return torch.cat([self.up(d1), e0], 1)

    def logits_from(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmap logits and log-size maps from ``last_decoder_input``'s features."""
        d0 = self.dec0(features)
        return self.head_hm(d0), self.head_size(d0)

    def forward_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmap logits and log-size maps, each at 1/stride resolution."""
        return self.logits_from(self.last_decoder_input(x))

    def outputs_from(self, features: torch.Tensor) -> torch.Tensor:
        """The network's output (sigmoid heatmaps, then log sizes) from ``last_decoder_input``'s features."""
        logits, log_size = self.logits_from(features)
        return torch.cat([torch.sigmoid(logits), log_size], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outputs_from(self.last_decoder_input(x))


def one_channel_branch(trunk: LesionUNet) -> tuple[nn.Sequential, nn.Conv2d]:
    """A copy of the network's last decoder block and heatmap head ending in a fresh one-channel 1x1
    convolution: a branch that reads ``last_decoder_input``'s features (the caller initialises the new
    convolution, returned beside the branch)."""
    head = copy.deepcopy(trunk.head_hm)
    final = head[-1]
    assert isinstance(final, nn.Conv2d)
    one = nn.Conv2d(final.in_channels, 1, 1)
    return nn.Sequential(copy.deepcopy(trunk.dec0), *list(head)[:-1], one), one


MODELS: dict[str, Callable[..., LesionUNet]] = {
    "unet16": lambda n_classes: LesionUNet(n_classes, base=16),
    "unet24": lambda n_classes: LesionUNet(n_classes, base=24),
    "unet8": lambda n_classes: LesionUNet(n_classes, base=8),
}


def create_model(name: str, n_classes: int = 3) -> LesionUNet:
    """Build a model by name; the error lists the valid names."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    return MODELS[name](n_classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
