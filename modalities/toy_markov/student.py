"""A few-step masked-diffusion student on short sequences: its sampler and exact distribution.

The student is the N-step ancestral sampler (MDLM) driven by a predictor of p(x0 | z_t). Its
trajectory log-probability is what the policy-gradient estimator needs (MATH.md, "Discrete
integral KL by policy gradient"); exact_distribution enumerates every corrupted state instead.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from unidistill.engine import masked_sampling
from unidistill.engine.masked_sampling import log_probs, time_grid, unmask_prob
from unidistill.engine.metrics.discrete import exact_kl
from unidistill.engine.process import MaskingProcess

from .chain import MarkovChainTeacher, all_sequences, sequence_index

Predictor = Callable[[Tensor, Tensor], Tensor]  # z (B, L) in {0..V}, t (B,) -> logits (B, L, V)
MAX_STATES = 200_000


def sequence_features(z: Tensor, t: Tensor, vocab: int, length: int, dtype: torch.dtype) -> Tensor:
    """Flattened one-hot of z (B, L) over {0..V} (V = mask) and time features [t, sin pi t, cos pi t]."""
    if z.ndim != 2 or z.shape[1] != length:
        raise ValueError(f"z must have shape (B, {length}), got {tuple(z.shape)}")
    onehot = nn.functional.one_hot(z.long(), vocab + 1).to(dtype).flatten(1)
    t = torch.as_tensor(t, dtype=dtype, device=z.device).expand(z.shape[0])
    return torch.cat([onehot, torch.stack([t, torch.sin(math.pi * t), torch.cos(math.pi * t)], -1)], -1)


class MaskedDenoiser(nn.Module):
    """MLP predictor of p(x0 | z_t): one-hot of z (V+1 classes) and time features -> logits."""

    def __init__(self, vocab: int, length: int, hidden: int = 128):
        super().__init__()
        for name, value in (("vocab", vocab), ("length", length), ("hidden", hidden)):
            if value < 1:
                raise ValueError(f"MaskedDenoiser {name} = {value}; it must be >= 1")
        self.vocab, self.length = vocab, length
        self.net = nn.Sequential(
            nn.Linear(length * (vocab + 1) + 3, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, length * vocab),
        )

    def forward(self, z: Tensor, t: Tensor) -> Tensor:
        """z (B, L) long in {0..V}, t (B,) -> logits (B, L, V)."""
        x = sequence_features(z, t, self.vocab, self.length, self.net[0].weight.dtype)
        return self.net(x).view(-1, self.length, self.vocab)


class FromProbabilities:
    """Adapter: a (z, t) -> probabilities callable used as a predictor (logits = log p)."""

    def __init__(self, probs_fn: Callable[[Tensor, Tensor], Tensor], length: int):
        self.probs_fn, self.length = probs_fn, length

    def __call__(self, z: Tensor, t: Tensor) -> Tensor:
        return torch.log(self.probs_fn(z, t))


def teacher_predictor(teacher: MarkovChainTeacher) -> FromProbabilities:
    """The exact teacher's masked conditionals as a predictor (its own N-step sampler)."""
    return FromProbabilities(lambda z, t: teacher.masked_conditionals(z), teacher.length)


def rollout(predictor: Predictor, n: int, steps: int, process: MaskingProcess,
            generator: torch.Generator | None = None, length: int | None = None) -> tuple[Tensor, Tensor]:
    """x (n, L) and the trajectory log-probability (n,) of the engine's ancestral rollout."""
    length = getattr(predictor, "length", None) if length is None else length
    if length is None:
        raise ValueError("rollout needs the sequence length: pass length= or give the predictor a .length attribute")
    traj = masked_sampling.rollout(predictor, n, steps, process, length, generator, vocab=process.mask_id)
    return traj.x, traj.log_prob


def _check_size(vocab: int, length: int, process: MaskingProcess | None = None) -> int:
    if vocab < 1 or length < 1:
        raise ValueError(f"vocab = {vocab} and length = {length} must both be >= 1")
    if process is not None and process.mask_id != vocab:
        raise ValueError(f"process.mask_id = {process.mask_id}; it must equal vocab = {vocab}")
    n_states = (vocab + 1) ** length
    if n_states > MAX_STATES:
        raise ValueError(f"(vocab + 1)^length = {vocab + 1}^{length} = {n_states} corrupted "
                         f"states; exact enumeration allows at most {MAX_STATES}")
    return n_states


def exact_distribution(predictor: Predictor, steps: int, process: MaskingProcess, vocab: int,
                       length: int) -> Tensor:
    """Exact, differentiable law of rollout's x over V^L (order of MarkovChainTeacher.enumerate):
    pi_s(z') = sum_z pi_t(z) prod_i K_i(z, z'_i), z ranging over z' with some tokens re-masked."""
    _check_size(vocab, length, process)
    grid = time_grid(steps, process)
    states = all_sequences(vocab + 1, length)  # (S, L) over {0..V}, mask = V
    n_states = states.shape[0]
    observed = states != vocab
    # predecessors z of each z': re-mask a subset of its observed tokens (2^L subsets; a subset
    # that re-masks an already masked position is invalid)
    remask = all_sequences(2, length).bool()[:, None, :]  # (2^L, 1, L)
    valid = (observed | ~remask).all(-1)  # (2^L, S)
    prev = sequence_index(torch.where(remask, vocab, states), vocab + 1)  # (2^L, S)
    cols = torch.arange(length) * vocab + states.clamp_max(vocab - 1)  # (S, L): x0_i = z'_i
    chunk = max(1, 2**22 // (n_states * length))  # subsets per chunk, bounds memory
    pi = torch.zeros(n_states, dtype=torch.float64)
    pi[-1] = 1.0  # the all-mask state is the last in lexicographic order
    for t, s in itertools.pairwise(grid):
        probs = log_probs(predictor, states, t.expand(n_states), vocab).exp()  # (S, L, V)
        probs = probs.reshape(n_states, length * vocab)
        p = unmask_prob(process, t, s)
        stay = torch.where(observed, 1.0, 1 - p)  # K_i at positions not unmasked on this step
        new = torch.zeros_like(pi)
        for lo in range(0, prev.shape[0], chunk):
            idx, b = prev[lo:lo + chunk], remask[lo:lo + chunk]
            token_p = probs[idx[..., None], cols]  # (C, S, L): p(x0_i = z'_i | z)
            kernel = torch.where(b, p * token_p, stay).prod(-1)
            new = new + torch.where(valid[lo:lo + chunk], pi[idx] * kernel, 0.0).sum(0)
        pi = new
    return pi[sequence_index(all_sequences(vocab, length), vocab + 1)]


def corrupted_distribution(probs_x: Tensor, t: float | Tensor, process: MaskingProcess,
                           vocab: int, length: int) -> Tensor:
    """q_t(z) = sum_x p(x) prod_i Q_t(z_i | x_i) over {0..V}^L: (..., V^L) -> (..., (V+1)^L)."""
    _check_size(vocab, length, process)
    if probs_x.shape[-1] != vocab**length:
        raise ValueError(f"probs_x has last dimension {probs_x.shape[-1]}; "
                         f"expected V^L = {vocab**length}")
    t = torch.as_tensor(t, dtype=torch.float64)
    if t.numel() != 1:
        raise ValueError(f"t must be a single time, got shape {tuple(t.shape)}")
    alpha = process.alpha(t).reshape(())
    kernel = torch.cat([alpha * torch.eye(vocab, dtype=torch.float64),
                        (1 - alpha).expand(vocab, 1)], 1)  # Q_t(z_i | x_i), (V, V+1)
    batch = probs_x.shape[:-1]
    p = probs_x.double().reshape(-1, *([vocab] * length))
    for _ in range(length):  # contract the oldest clean axis, append its corrupted axis last
        p = torch.tensordot(p, kernel, dims=([1], [0]))
    return p.reshape(*batch, (vocab + 1) ** length)


def exact_student_kl(predictor: Predictor, steps: int, teacher: MarkovChainTeacher,
                     process: MaskingProcess) -> float:
    """KL(student N-step distribution || teacher distribution), exact by enumeration."""
    with torch.no_grad():
        p = exact_distribution(predictor, steps, process, teacher.vocab, teacher.length)
        _, q = teacher.enumerate()
        return exact_kl(p, q)


class MaskedDiscriminator(nn.Module):
    """Time-conditioned density-ratio estimator on corrupted sequences:
    logit(z, t) ~ log teacher_t(z) / student_t(z) at the BCE optimum."""

    def __init__(self, vocab: int, length: int, hidden: int = 128):
        super().__init__()
        self.vocab, self.length = vocab, length
        self.net = nn.Sequential(
            nn.Linear(length * (vocab + 1) + 3, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, z: Tensor, t: Tensor) -> Tensor:
        """z (B, L) in {0..V}, t (B,) -> logit (B,)."""
        return self.net(sequence_features(z, t, self.vocab, self.length, self.net[0].weight.dtype)).squeeze(-1)
