"""MAR's two networks, small: the masked bidirectional transformer that maps (visible tokens, class) to one
condition vector z_i per token, and the per-token diffusion head eps(x_t, t, z_i) (MAR's SimpleMLPAdaLN).

Transformer (Li et al. 2024, sec. 3.3 and `models/mar.py`): `buffer` class tokens are prepended; the encoder sees
the buffer and the visible tokens only (masked tokens are ignored as keys), the decoder sees every position with
masked ones replaced by a learned mask token, and a learned position embedding is added to its output. Its blocks
are the engine's DiT blocks, conditioned on the class embedding; the null class (label dropout) is the table's last
row. Head: x -> Linear, y = TimestepEmbedding(t) + Linear(z); residual blocks x + gate MLP(adaLN(x, y)) with zero-
initialised adaLN and output layers, so it starts at eps = 0; eps prediction (MAR's learned variance is not kept:
the sampler uses the DDPM posterior variance)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from unidistill.engine.nn import DiTBlock, LabelEmbedding, TimestepEmbedding


class MARTransformer(nn.Module):
    """(tokens (B, L, d), visible (B, L) bool, labels (B,)) -> z (B, L, width)."""

    def __init__(self, token_dim: int, length: int, classes: int = 10, width: int = 128, depth: int = 2,
                 decoder_depth: int = 2, heads: int = 4, buffer: int = 4, label_dropout: float = 0.1):
        super().__init__()
        self.token_dim, self.length, self.buffer, self.width = token_dim, length, buffer, width
        self.label = LabelEmbedding(classes, width, label_dropout)
        self.embed = nn.Linear(token_dim, width)
        self.enc_pos = nn.Parameter(torch.randn(1, buffer + length, width) * 0.02)
        self.dec_pos = nn.Parameter(torch.randn(1, buffer + length, width) * 0.02)
        self.out_pos = nn.Parameter(torch.randn(1, length, width) * 0.02)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.encoder = nn.ModuleList(DiTBlock(width, heads) for _ in range(depth))
        self.decoder = nn.ModuleList(DiTBlock(width, heads) for _ in range(decoder_depth))
        self.norm = nn.LayerNorm(width, eps=1e-6)

    def forward(self, tokens: Tensor, visible: Tensor, labels: Tensor, drop: Tensor | None = None) -> Tensor:
        """`drop` (B,) bool forces the null class (for the unconditional half of guidance)."""
        b = tokens.shape[0]
        c = self.label(labels, drop)
        x = torch.cat([c[:, None].expand(b, self.buffer, -1), self.embed(tokens)], 1) + self.enc_pos
        ignored = torch.cat([torch.zeros(b, self.buffer, dtype=torch.bool, device=tokens.device), ~visible], 1)
        for block in self.encoder:
            x = block(x, c, ignored)
        x = torch.where(ignored[..., None], self.mask_token.to(x.dtype), x) + self.dec_pos
        for block in self.decoder:
            x = block(x, c)
        return self.norm(x[:, self.buffer:]) + self.out_pos


class _ResBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        shift, scale, gate = self.ada(y).chunk(3, dim=-1)
        return x + gate * self.mlp(self.norm(x) * (1 + scale) + shift)


class DiffusionHead(nn.Module):
    """eps(x_t (N, d), t (N,) in [0, 1], z (N, cond_dim)) -> (N, d); t enters as 1000 t (the DDPM index + 1)."""

    def __init__(self, token_dim: int, cond_dim: int, width: int = 128, depth: int = 3):
        super().__init__()
        self.token_dim, self.cond_dim = token_dim, cond_dim
        self.inp = nn.Linear(token_dim, width)
        self.time = TimestepEmbedding(width)
        self.cond = nn.Linear(cond_dim, width)
        self.blocks = nn.ModuleList(_ResBlock(width) for _ in range(depth))
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, token_dim)
        for layer in (self.ada[1], self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, t: Tensor, z: Tensor) -> Tensor:
        y = self.time(1000 * t) + self.cond(z)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, y)
        shift, scale = self.ada(y).chunk(2, dim=-1)
        return self.out(self.norm(h) * (1 + scale) + shift)
