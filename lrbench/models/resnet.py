"""The CIFAR ResNets of He et al. 2016: `resnet{6n+2}`, from resnet8 to resnet1202.

Option A shortcuts (stride-2 subsample + zero-padded channels, no parameters) are the paper's
CIFAR choice and the default; option B (1x1 conv + BN where the shape changes) is available
because much public code uses it and its parameter count differs. Each module's
`grouped_forward` is its forward for G models side by side (lrbench.models.grouped).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lrbench.errors import UserError
from lrbench.models.grouped import GroupedLayers

STANDARD_DEPTHS = (20, 32, 38, 44, 56, 110)
MAX_DEPTH = 1202
SHORTCUTS = ("A", "B")


class _ZeroPadShortcut(nn.Module):
    """Option A: parameter-free, so every depth's count matches the paper's table."""

    def __init__(self, stride: int, extra_channels: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        half = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, half, self.extra - half))

    def grouped_forward(self, layers: GroupedLayers, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        half = self.extra // 2
        return layers.pad_channels(x, half, self.extra - half)


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            if shortcut == "A":
                self.shortcut = _ZeroPadShortcut(stride, planes - in_planes)
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))

    def grouped_forward(self, layers: GroupedLayers, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(layers.bn(layers.conv(x, self.conv1.stride[0])))
        out = layers.bn(layers.conv(out))
        if isinstance(self.shortcut, nn.Identity):
            short = x
        elif isinstance(self.shortcut, _ZeroPadShortcut):
            short = self.shortcut.grouped_forward(layers, x)
        else:  # option B: 1x1 convolution and BatchNorm
            short = layers.bn(layers.conv(x, self.conv1.stride[0], padding=0))
        return F.relu(out + short)


class CifarResNet(nn.Module):
    """conv3x3(16) - 3 stages of n blocks at 16/32/64 channels - global pool - linear."""

    def __init__(self, depth: int, num_classes: int, shortcut: str = "A") -> None:
        super().__init__()
        n = blocks_per_stage(depth)
        self.depth = depth
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers: list[nn.Module] = []
        in_planes = 16
        for stage, planes in enumerate((16, 32, 64)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(BasicBlock(in_planes, planes, stride, shortcut))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)

    def grouped_forward(self, layers: GroupedLayers, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(layers.bn(layers.conv(x)))
        for block in self.layers:
            x = block.grouped_forward(layers, x)
        return layers.linear(F.adaptive_avg_pool2d(x, 1).flatten(1))


def blocks_per_stage(depth: int) -> int:
    """n for depth 6n+2; UserError naming the depth when it is not one, or beyond MAX_DEPTH."""
    if depth < 8 or (depth - 2) % 6:
        raise UserError(
            f"resnet depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), got {depth}"
        )
    if depth > MAX_DEPTH:
        raise UserError(
            f"resnet depth {depth} is beyond {MAX_DEPTH}, the deepest CIFAR ResNet of He et al."
        )
    return (depth - 2) // 6
