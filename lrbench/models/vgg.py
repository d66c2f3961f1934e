"""VGG for CIFAR-sized images: `vgg11`, `vgg13`, `vgg16`, `vgg19`.

The common CIFAR form (as in most public CIFAR code): 3x3 convolutions with BatchNorm and ReLU,
2x2 max pooling after each of the five stages, and one linear head on the 512 pooled features
instead of ImageNet's three-layer classifier. The features are average-pooled to 1x1, which is
the identity on 32-pixel images and lets larger images (STL-10's 96) through unchanged.
Initialisation is torchvision's VGG's. `grouped_forward`: G VGGs side by side
(lrbench.models.grouped).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lrbench.models.grouped import GroupedLayers

M = "M"  # a 2x2 max pool between stages
CONFIGS: dict[int, tuple[int | str, ...]] = {
    11: (64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M),
    13: (64, 64, M, 128, 128, M, 256, 256, M, 512, 512, M, 512, 512, M),
    16: (64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M),
    19: (64, 64, M, 128, 128, M, *[256] * 4, M, *[512] * 4, M, *[512] * 4, M),
}


class VGG(nn.Module):
    """features (conv-BN-ReLU and max pools) - global average pool - linear(512, classes)."""

    def __init__(self, depth: int, num_classes: int) -> None:
        super().__init__()
        self.config = CONFIGS[depth]
        layers: list[nn.Module] = []
        channels = 3
        for item in self.config:
            if item == M:
                layers.append(nn.MaxPool2d(2))
            else:
                width = int(item)
                layers += [
                    nn.Conv2d(channels, width, 3, padding=1),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.classifier(x)

    def grouped_forward(self, layers: GroupedLayers, x: torch.Tensor) -> torch.Tensor:
        for item in self.config:
            x = F.max_pool2d(x, 2) if item == M else F.relu(layers.bn(layers.conv(x, bias=True)))
        return layers.linear(F.adaptive_avg_pool2d(x, 1).flatten(1))
