"""gpt{L}-{W}: a decoder-only transformer for character-level language modelling.

L pre-LayerNorm blocks of width W: causal self-attention (torch's scaled_dot_product_attention)
and a 4W GELU MLP, each added to the residual stream; learned position embeddings; a final
LayerNorm; the output layer is the token embedding (tied). No dropout and no biases (nanoGPT's
training default). Initialisation as GPT-2 and nanoGPT: weights N(0, 0.02), the projections
into the residual stream N(0, 0.02 / sqrt(2L)), LayerNorm weights 1.

Heads: max(4, W // 64), so heads of 64 from W = 256 up and 4 heads below (gpt4-128: 4 heads of
32; gpt6-384: 6 heads of 64, nanoGPT's Shakespeare model). W must divide by its heads.
Parameters: 12 L W^2 (attention 4 W^2, MLP 8 W^2) + (2L + 1) W (LayerNorms) + (V + C) W
(embeddings, V the vocabulary, C the context): gpt4-128 on Tiny Shakespeare (V = 65) with
context 64 has 804,096; gpt6-384 with context 256 has 10,745,088.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lrbench.errors import UserError

MAX_LAYERS = 96
WIDTHS = (8, 16_384)
INIT_STD = 0.02


def heads_for(width: int) -> int:
    return max(4, width // 64)


def check_size(layers: int, width: int) -> None:
    """UserError naming the value unless gpt{layers}-{width} is a size lrbench builds."""
    if not 1 <= layers <= MAX_LAYERS:
        raise UserError(f"gpt layers must be from 1 to {MAX_LAYERS}, got {layers}")
    low, high = WIDTHS
    if not low <= width <= high:
        raise UserError(f"gpt width must be from {low} to {high:,}, got {width}")
    heads = heads_for(width)
    if width % heads:
        raise UserError(
            f"gpt width {width} does not divide into its {heads} heads (max(4, W // 64)); "
            f"try {width - width % heads}"
        )


class Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width, bias=False)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)
        self.ln2 = nn.LayerNorm(width, bias=False)
        self.fc = nn.Linear(width, 4 * width, bias=False)
        self.out = nn.Linear(4 * width, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, w = x.shape
        qkv = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, w // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [b, heads, t, head_dim]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, w))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    """Token ids [B, T] (T <= context) -> next-token logits [B, T, vocab]."""

    decay_matrices_only = True  # lrbench.train.optim.param_groups: no decay on LayerNorm weights

    def __init__(self, layers: int, width: int, vocab: int, context: int) -> None:
        super().__init__()
        check_size(layers, width)
        self.context = context
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads_for(width)) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width, bias=False)
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                deep = name.endswith(("proj.weight", "out.weight"))
                std = INIT_STD / math.sqrt(2 * layers) if deep else INIT_STD
                nn.init.normal_(p, mean=0.0, std=std)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[-1]
        x = self.tok(idx) + self.pos.weight[:t]
        for block in self.blocks:
            x = block(x)
        return F.linear(self.ln_f(x), self.tok.weight)
