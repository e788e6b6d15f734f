"""A masked diffusion language model (MDLM, Sahoo et al. 2024) in transformers format: a DiT
backbone from the engine's blocks (adaLN, SDPA/xformers attention) over token embeddings with
learned positions, the SUBS parameterisation on its output, and soft inputs (probabilities x
embedding matrix) for gradient-guided sampling. `save_pretrained` / `from_pretrained` work."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers import PretrainedConfig, PreTrainedModel

from unidistill.engine.nn import DiTBlock, FinalLayer, TimestepEmbedding

NEG_INF = float("-inf")


def subs(logits: Tensor, z: Tensor, mask_id: int) -> Tensor:
    """SUBS (Sahoo et al. 2024, sec. 3.2): log-probabilities of x0 with zero mass on the mask token
    ("zero masking") and unmasked tokens carried over unchanged; logits (B, L, V), z (B, L) -> (B, L, V)."""
    logits = logits.float().clone()
    logits[..., mask_id] = NEG_INF
    logp = torch.log_softmax(logits, -1)
    carry = torch.full_like(logp, NEG_INF).scatter_(-1, z[..., None], 0.0)
    return torch.where((z != mask_id)[..., None], carry, logp)


class MDLMConfig(PretrainedConfig):
    model_type = "unidistill_mdlm"

    def __init__(self, vocab_size: int = 2048, mask_token_id: int = 1, max_position_embeddings: int = 64,
                 hidden_size: int = 192, num_layers: int = 4, num_heads: int = 3, mlp_ratio: float = 4.0,
                 time_conditioning: bool = False, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.mask_token_id = vocab_size, mask_token_id
        self.max_position_embeddings = max_position_embeddings
        self.hidden_size, self.num_layers, self.num_heads = hidden_size, num_layers, num_heads
        self.mlp_ratio, self.time_conditioning = mlp_ratio, time_conditioning
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout = {dropout}; it must be in [0, 1)")
        self.dropout = dropout  # residual dropout in every block while training (sampling runs in eval mode)


class MDLMBackbone(nn.Module):
    """Token (or soft) embeddings + positions -> DiT blocks -> hidden states (B, L, hidden)."""

    def __init__(self, c: MDLMConfig):
        super().__init__()
        self.embed = nn.Embedding(c.vocab_size, c.hidden_size)
        # GPT-2's scale: with nn.Embedding's N(0, 1) the 0.02-scale positions are drowned out and the
        # model never learns to use its context (a copy task in tests/test_masked_diffusion.py checks this)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.pos = nn.Parameter(torch.randn(1, c.max_position_embeddings, c.hidden_size) * 0.02)
        self.time = TimestepEmbedding(c.hidden_size) if c.time_conditioning else None
        self.cond = nn.Parameter(torch.zeros(c.hidden_size))  # the adaLN input when time is not an input
        self.blocks = nn.ModuleList(DiTBlock(c.hidden_size, c.num_heads, c.mlp_ratio, c.dropout)
                                    for _ in range(c.num_layers))
        self.max_length = c.max_position_embeddings

    def embed_tokens(self, ids: Tensor | None, probs: Tensor | None) -> Tensor:
        if (ids is None) == (probs is None):
            raise ValueError("pass exactly one of input_ids (B, L) and probs (B, L, V)")
        if ids is not None:
            return self.embed(ids)
        return probs.to(self.embed.weight.dtype) @ self.embed.weight

    def conditioning(self, t: Tensor | None, b: int) -> Tensor:
        c = self.cond.expand(b, -1)
        if self.time is not None:
            if t is None:
                raise ValueError("this model is time-conditioned: pass t (B,)")
            c = c + self.time(1000 * t.reshape(-1).expand(b))
        return c

    def forward(self, ids: Tensor | None = None, t: Tensor | None = None, probs: Tensor | None = None,
                upto: int | None = None) -> tuple[Tensor, Tensor]:
        """Hidden states (B, L, hidden) after `upto` blocks (all by default) and the adaLN input c (B, hidden)."""
        h = self.embed_tokens(ids, probs)
        n = h.shape[1]
        if n > self.max_length:
            raise ValueError(f"sequence length {n} exceeds the model's max_length {self.max_length}")
        h = h + self.pos[:, :n]
        c = self.conditioning(t, h.shape[0])
        for block in self.blocks[:upto]:
            h = block(h, c)
        return h, c


class MDLMModel(PreTrainedModel):
    """p_theta(x0 | z_t): z (B, L) token ids with mask_token_id -> SUBS log-probabilities (B, L, V)."""

    config_class = MDLMConfig
    base_model_prefix = "mdlm"

    def __init__(self, config: MDLMConfig):
        super().__init__(config)
        self.backbone = MDLMBackbone(config)
        self.head = FinalLayer(config.hidden_size, config.vocab_size)
        self.post_init()

    def _init_weights(self, module):  # keep the DiT initialisation (adaLN-Zero) of the modules
        pass

    @property
    def mask_id(self) -> int:
        return self.config.mask_token_id

    @property
    def time_conditioned(self) -> bool:  # False allows the sampler's no-change cache
        return bool(self.config.time_conditioning)

    @property
    def length(self) -> int:
        return self.config.max_position_embeddings

    def logits(self, input_ids: Tensor | None = None, t: Tensor | None = None, probs: Tensor | None = None) -> Tensor:
        """Raw logits (B, L, V) before SUBS; soft inputs `probs` (B, L, V) replace input_ids."""
        h, c = self.backbone(input_ids, t, probs)
        return self.head(h, c)

    def forward(self, input_ids: Tensor, t: Tensor | None = None) -> Tensor:
        """SUBS log-probabilities of x0 (B, L, V) given z_t = input_ids (B, L)."""
        return subs(self.logits(input_ids, t), input_ids, self.config.mask_token_id)
