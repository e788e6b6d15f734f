"""A Markov-chain teacher over short token sequences with exact masked conditionals.

p(x) = init(x_0) prod_i T(x_{i-1}, x_i). The mask token id is V (the vocabulary size), so a
corrupted sequence z has entries in {0..V}; masked positions are summed out exactly by the
forward-backward recursions, so q_t(z) and p(x_i | z) are exact (DESIGN.md s.3).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from unidistill.engine.process import MaskingProcess, gumbel_argmax

CONFIG_KEYS = ("init", "transition", "length")
MAX_VOCAB, MAX_LENGTH = 8, 8


def all_sequences(base: int, length: int) -> Tensor:
    """Every sequence in {0..base-1}^length in lexicographic order, (base^length, length) long."""
    idx = torch.arange(base**length)
    powers = base ** torch.arange(length - 1, -1, -1)
    return (idx[:, None] // powers) % base


def sequence_index(x: Tensor, base: int) -> Tensor:
    """Row of each sequence x (B, L) in all_sequences(base, L): sum_i x_i base^(L-1-i)."""
    powers = base ** torch.arange(x.shape[-1] - 1, -1, -1, device=x.device)
    return (x.long() * powers).sum(-1)


def _check_distribution(p: Tensor, name: str) -> None:
    """Rows of p must be finite, non-negative and sum to 1 within 1e-5."""
    rows = p.reshape(-1, p.shape[-1])
    for i, row in enumerate(rows):
        label = name if p.ndim == 1 else f"{name} row {i}"
        if not torch.isfinite(row).all() or (row < 0).any():
            raise ValueError(
                f"{label} has entries {row.tolist()}; probabilities must be finite and >= 0")
        if abs(float(row.sum()) - 1) > 1e-5:
            raise ValueError(
                f"{label} sums to {float(row.sum()):.6g}; it must sum to 1 (within 1e-5)")


class MarkovChainTeacher:
    """p(x) = init(x_0) prod_{i>0} T(x_{i-1}, x_i) over x in {0..V-1}^L, all in float64."""

    def __init__(self, init: Any, transition: Any, length: int):
        init = torch.as_tensor(init, dtype=torch.float64)
        transition = torch.as_tensor(transition, dtype=torch.float64)
        if init.ndim != 1:
            raise ValueError(f"init must be a vector (V,), got shape {tuple(init.shape)}")
        v = init.shape[0]
        if not 2 <= v <= MAX_VOCAB:
            raise ValueError(f"vocabulary size V = {v} (length of init); allowed: 2..{MAX_VOCAB}")
        if transition.shape != (v, v):
            raise ValueError(f"transition must have shape ({v}, {v}) to match init, "
                             f"got {tuple(transition.shape)}")
        if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= MAX_LENGTH:
            raise ValueError(f"length = {length!r}; allowed: an integer in 1..{MAX_LENGTH}")
        _check_distribution(init, "init")
        _check_distribution(transition, "transition")
        self.init, self.transition, self.length = init, transition, length
        self.vocab = v
        self.mask_id = v

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MarkovChainTeacher:
        """Build from {"init": [...], "transition": [[...]], "length": L}; unknown keys raise."""
        for key in config:
            if key not in CONFIG_KEYS:
                raise ValueError(f"unknown Markov teacher config key {key!r}; "
                                 f"allowed keys: {', '.join(CONFIG_KEYS)}")
        missing = [k for k in CONFIG_KEYS if k not in config]
        if missing:
            raise ValueError(f"Markov teacher config is missing {', '.join(missing)}; "
                             f"required keys: {', '.join(CONFIG_KEYS)}")
        return cls(config["init"], config["transition"], config["length"])

    # ------------------------------------------------------------------ validation
    def _check(self, x: Tensor, allow_mask: bool, name: str) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.length:
            raise ValueError(f"{name} must have shape (B, {self.length}), got {tuple(x.shape)}")
        if x.dtype.is_floating_point or x.dtype == torch.bool:
            raise ValueError(f"{name} must hold integer token ids, got dtype {x.dtype}")
        hi = self.vocab if allow_mask else self.vocab - 1
        if x.numel() and (x.min() < 0 or x.max() > hi):
            raise ValueError(
                f"{name} has token ids in [{int(x.min())}, {int(x.max())}]; allowed: 0..{hi}")
        return x.long()

    # ------------------------------------------------------------------ clean sequences
    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) = log init(x_0) + sum_i log T(x_{i-1}, x_i); x (B, L) -> (B,)."""
        x = self._check(x, allow_mask=False, name="x")
        lp = torch.log(self.init)[x[:, 0]]
        if self.length > 1:
            lp = lp + torch.log(self.transition)[x[:, :-1], x[:, 1:]].sum(-1)
        return lp

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n ancestral samples (n, L), drawn with float64 Gumbel-argmax."""
        x = torch.empty(n, self.length, dtype=torch.long)
        x[:, 0] = gumbel_argmax(torch.log(self.init).expand(n, -1), generator)
        log_t = torch.log(self.transition)
        for i in range(1, self.length):
            x[:, i] = gumbel_argmax(log_t[x[:, i - 1]], generator)
        return x

    def enumerate(self) -> tuple[Tensor, Tensor]:
        """(X (V^L, L) long in lexicographic order, p(X) (V^L,) float64)."""
        x = all_sequences(self.vocab, self.length)
        return x, torch.exp(self.log_prob(x))

    def index_of(self, x: Tensor) -> Tensor:
        """Row of each sequence x (B, L) in enumerate()."""
        return sequence_index(self._check(x, allow_mask=False, name="x"), self.vocab)

    # ------------------------------------------------------------------ corrupted sequences
    def _forward_backward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Forward a_i(v) = P(obs_{<=i}, x_i = v), backward b_i(v) = P(obs_{>i} | x_i = v)."""
        z = self._check(z, allow_mask=True, name="z")
        masked = (z == self.mask_id)[..., None]
        onehot = torch.nn.functional.one_hot(z.clamp_max(self.vocab - 1), self.vocab).double()
        e = torch.where(masked, torch.ones_like(onehot), onehot)  # (B, L, V) evidence per position
        a = [self.init * e[:, 0]]
        for i in range(1, self.length):
            a.append((a[-1] @ self.transition) * e[:, i])
        b = [torch.ones_like(a[0])]
        for i in range(self.length - 1, 0, -1):
            b.append((e[:, i] * b[-1]) @ self.transition.T)
        return torch.stack(a, 1), torch.stack(b[::-1], 1)

    def unmasked_log_prob(self, z: Tensor) -> Tensor:
        """log P(unmasked tokens of z), masked positions summed out (forward algorithm); (B,)."""
        a, _ = self._forward_backward(z)
        return torch.log(a[:, -1].sum(-1))

    def masked_conditionals(self, z: Tensor) -> Tensor:
        """p(x_i = v | unmasked tokens of z) (B, L, V) by forward-backward; one-hot at unmasked
        positions. Where the unmasked tokens have probability 0 the masked rows are uniform."""
        a, b = self._forward_backward(z)
        joint = a * b
        norm = joint.sum(-1, keepdim=True)
        uniform = torch.full_like(joint, 1 / self.vocab)
        masked = (z == self.mask_id)[..., None]
        fallback = torch.where(masked, uniform, torch.nn.functional.one_hot(
            z.long().clamp_max(self.vocab - 1), self.vocab).double())
        return torch.where(norm > 0, joint / norm.clamp_min(1e-300), fallback)

    def corrupted_log_prob(self, z: Tensor, t: Tensor, process: MaskingProcess) -> Tensor:
        """log q_t(z) = log P(obs of z) + #obs log alpha_t + #masked log(1 - alpha_t); t (B,)."""
        if process.mask_id != self.mask_id:
            raise ValueError(f"process.mask_id = {process.mask_id}, but this teacher's mask id "
                             f"is V = {self.mask_id}")
        t = torch.as_tensor(t, dtype=torch.float64).expand(z.shape[0])
        alpha = process.alpha(t)
        n_mask = (z == self.mask_id).double().sum(-1)
        n_obs = self.length - n_mask
        log_q = torch.xlogy(n_obs, alpha) + torch.xlogy(n_mask, 1 - alpha)
        return self.unmasked_log_prob(z) + log_q
