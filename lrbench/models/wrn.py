"""Wide ResNets (Zagoruyko & Komodakis 2016): `wrn{depth}-{width}`, e.g. wrn16-8, wrn28-10.

conv3x3(16), then three stages of n = (depth - 4) / 6 pre-activation blocks (BN-ReLU-conv3x3,
BN-ReLU-conv3x3) at 16k, 32k and 64k channels (k the width; strides 1, 2, 2), a 1x1 convolution
on the pre-activated input where a block changes the shape, then BN-ReLU, global average pool
and a linear head. Dropout between a block's convolutions is off unless asked for: a dropout
mask is drawn per model, so packed models would no longer equal their single runs.
Initialisation is the authors' PyTorch code's (Kaiming-normal convolutions, zero biases).
`grouped_forward`: G of them side by side (lrbench.models.grouped).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lrbench.errors import UserError
from lrbench.models.grouped import GroupedLayers

MAX_DEPTH = 100
MAX_WIDTH = 16


class WideBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut: nn.Conv2d | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)
        self.stride = stride
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(x))
        y = F.relu(self.bn2(self.conv1(o)))
        y = self.conv2(F.dropout(y, self.dropout, self.training) if self.dropout else y)
        return y + (x if self.shortcut is None else self.shortcut(o))

    def grouped_forward(self, layers: GroupedLayers, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(layers.bn(x))
        y = F.relu(layers.bn(layers.conv(o, self.stride)))
        y = layers.conv(F.dropout(y, self.dropout, layers.training) if self.dropout else y)
        return y + (x if self.shortcut is None else layers.conv(o, self.stride, padding=0))


class WideResNet(nn.Module):
    """WRN-depth-width; also a factory for an `import:` model entry that wants dropout:
    `{import: "lrbench.models.wrn:WideResNet", args: {depth: 16, width: 8, dropout: 0.3}}`."""

    def __init__(self, depth: int, width: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        n = blocks_per_stage(depth, width)
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        blocks: list[nn.Module] = []
        in_planes = 16
        for stage, planes in enumerate((16 * width, 32 * width, 64 * width)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(WideBlock(in_planes, planes, stride, dropout))
                in_planes = planes
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.conv1(x))
        x = F.relu(self.bn(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))

    def grouped_forward(self, layers: GroupedLayers, x: torch.Tensor) -> torch.Tensor:
        x = layers.conv(x)
        for block in self.blocks:
            x = block.grouped_forward(layers, x)
        x = F.relu(layers.bn(x))
        return layers.linear(F.adaptive_avg_pool2d(x, 1).flatten(1))


def blocks_per_stage(depth: int, width: int) -> int:
    """n for depth 6n+4; UserError naming the value when depth or width is out of bounds."""
    if depth < 10 or (depth - 4) % 6:
        raise UserError(
            f"wrn depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 40, ...), got {depth}"
        )
    if depth > MAX_DEPTH:
        raise UserError(f"wrn depth {depth} is beyond {MAX_DEPTH}")
    if not 1 <= width <= MAX_WIDTH:
        raise UserError(f"wrn width must be between 1 and {MAX_WIDTH}, got {width}")
    return (depth - 4) // 6
