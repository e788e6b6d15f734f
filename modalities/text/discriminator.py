"""DiDi-Instruct's discriminator D(z_t, t): the teacher's body (token embedding and transformer blocks,
all but the last `trainable_blocks` frozen) with a time embedding and a spectral-normalised head giving
one logit per token; logit ~ log q_teacher,t / q_student,t at the BCE optimum. Reads soft inputs."""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from unidistill.engine.nn import TimestepEmbedding

from .masked_lm import block_list, hidden_states, without_dropout


class TokenDiscriminator(nn.Module):
    """z (B, L) ids (or soft inputs probs (B, L, V)), t (B,) -> per-token logits (B, L)."""

    def __init__(self, teacher: nn.Module, trainable_blocks: int = 1):
        super().__init__()
        self.body = without_dropout(copy.deepcopy(teacher))
        if hasattr(self.body, "head"):  # an MDLM's vocabulary head is not used
            self.body.head = nn.Identity()
        blocks = block_list(self.body)
        if not 0 <= trainable_blocks <= len(blocks):
            raise ValueError(f"trainable_blocks = {trainable_blocks}; the teacher has {len(blocks)} blocks")
        self.body.requires_grad_(False)
        for block in blocks[len(blocks) - trainable_blocks:]:
            block.requires_grad_(True)
        width = hidden_states(self.body, torch.zeros(1, 1, dtype=torch.long)).shape[-1]
        self.time = TimestepEmbedding(width)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Sequential(spectral_norm(nn.Linear(width, width)), nn.SiLU(),
                                  spectral_norm(nn.Linear(width, 1)))

    def forward(self, z: Tensor, t: Tensor, probs: Tensor | None = None) -> Tensor:
        h = hidden_states(self.body, None if probs is not None else z, probs=probs)
        h = self.norm(h.float()) + self.time(1000 * t.float().reshape(-1).expand(h.shape[0]))[:, None]
        return self.head(h).squeeze(-1)
