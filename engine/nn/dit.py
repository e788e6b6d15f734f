"""DiT transformer block with adaLN-Zero conditioning (Peebles & Xie 2023, sec. 3.2, Fig. 3)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .attention import MultiHeadAttention, checkpointed


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: x * (1 + scale) + shift, with (B, dim) shift/scale broadcast over tokens."""
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """x + gate * f(adaLN(x, c)) for attention then MLP, adaLN-Zero (Peebles & Xie 2023,
    sec. 3.2); x (B, L, dim), c (B, dim) -> (B, L, dim); identity at initialisation.

    With `checkpointing` on (engine.speedups.enable_activation_checkpointing), a forward that records a graph
    keeps only the block's inputs and recomputes the rest in backward: the same operations, less memory."""

    checkpointing: bool = False

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        # residual dropout on both branches (MDLM's DDiT blocks use 0.1); no module at all when off
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = MultiHeadAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim)
        )
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.ada[1].weight)  # zero gates: the block starts as the identity
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: Tensor, c: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        if self.checkpointing and torch.is_grad_enabled() and self._needs_graph(x, c):
            return checkpointed(self._forward, x, c, key_padding_mask)
        return self._forward(x, c, key_padding_mask)

    def _needs_graph(self, x: Tensor, c: Tensor) -> bool:
        """Whether backward will reach this block (an input or a parameter requires grad); a frozen block on
        inputs without graph stores nothing, and checkpointing it would store its inputs for nothing."""
        return x.requires_grad or c.requires_grad or any(p.requires_grad for p in self.parameters())

    def _forward(self, x: Tensor, c: Tensor, key_padding_mask: Tensor | None) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=-1)
        h = self.attn(modulate(self.norm1(x), shift1, scale1), key_padding_mask)
        x = x + gate1[:, None] * self.drop(h)
        x = x + gate2[:, None] * self.drop(self.mlp(modulate(self.norm2(x), shift2, scale2)))
        return x


class FinalLayer(nn.Module):
    """Linear(adaLN(x, c)) with zero-initialised output (Peebles & Xie 2023, sec. 3.2);
    x (B, L, dim), c (B, dim) -> (B, L, out_dim)."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, out_dim)
        for layer in (self.ada[1], self.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.ada(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))
