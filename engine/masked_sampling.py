"""Ancestral sampling of masked diffusion models (MDLM, Sahoo et al. 2024, sec. 3.3): from all-mask
at t = 1 to t = 0, a masked token unmasks on the step t -> s with probability
(alpha_s - alpha_t) / (1 - alpha_t) to a token drawn (float64 Gumbel) from p_theta(x0 | z_t).

A predictor maps z (B, L) and t (B,) to logits or log-probabilities (B, L, V) (SUBS or not; they are
renormalised here). `sample` is the inference sampler with the no-change cache; `rollout` is the
differentiable version that also returns the trajectory's log-probability for policy gradients."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .process import MaskingProcess, gumbel_argmax

Predictor = Callable[[Tensor, Tensor], Tensor]  # z (B, L), t (B,) -> logits (B, L, V)


def time_grid(steps: int, process: MaskingProcess) -> Tensor:
    """Uniform grid t_k = 1 - k / steps (float64); alpha(0) = 1 makes the last step unmask all."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps = {steps!r}; it must be an integer >= 1")
    grid = 1 - torch.arange(steps + 1, dtype=torch.float64) / steps
    alpha_0 = float(process.alpha(grid[-1:]))
    if alpha_0 != 1.0:
        raise ValueError(f"process alpha(0) = {alpha_0}; the sampler needs alpha(0) = 1")
    return grid


def unmask_prob(process: MaskingProcess, t: float | Tensor, s: float | Tensor) -> Tensor:
    """(alpha_s - alpha_t) / (1 - alpha_t): chance a masked token unmasks on the step t -> s."""
    a_t = process.alpha(torch.as_tensor(t, dtype=torch.float64))
    a_s = process.alpha(torch.as_tensor(s, dtype=torch.float64))
    return ((a_s - a_t) / (1 - a_t)).clamp(0, 1)


def log_probs(predictor: Predictor, z: Tensor, t: Tensor, vocab: int | None = None,
              dtype: torch.dtype = torch.float64) -> Tensor:
    """log-softmax (float64 by default) of the predictor's output (B, L, V), shape-checked against z (B, L)."""
    out = predictor(z, t)
    if out.ndim != 3 or out.shape[:2] != z.shape or (vocab is not None and out.shape[2] != vocab):
        raise ValueError(f"predictor returned shape {tuple(out.shape)}; expected {(*z.shape, vocab or 'V')}")
    return torch.log_softmax(out.to(dtype), -1)


def is_time_conditioned(predictor) -> bool:
    """Whether p_theta(x0 | z_t) depends on t; only a time-free model may reuse a step's output."""
    return bool(getattr(predictor, "time_conditioned", True))


@dataclass
class SampleStats:
    nfe: int = 0  # network evaluations actually made (the no-change cache skips some)
    steps: int = 0  # sampler steps
    extra: dict[str, float] = field(default_factory=dict)  # e.g. discriminator evaluations


@torch.no_grad()
def sample(predictor: Predictor, n: int, steps: int, process: MaskingProcess, length: int,
           generator: torch.Generator | None = None, cache: bool = True,
           device: torch.device | str = "cpu") -> tuple[Tensor, SampleStats]:
    """x (n, L) from the N-step ancestral sampler. With `cache` and a time-free predictor, a sequence
    none of whose tokens changed on a step reuses its previous output (MDLM's no-change cache, kept per
    sequence; exact for such models), so stats.nfe, the mean evaluations per sequence, is at most
    min(steps, L + 1)."""
    grid = time_grid(steps, process)
    use_cache = cache and not is_time_conditioned(predictor)
    z = torch.full((n, length), process.mask_id, dtype=torch.long, device=device)
    stats, probs = SampleStats(steps=steps), None
    stale = torch.ones(n, dtype=torch.bool, device=device)
    evaluations = 0
    for k in range(steps):
        t, s = grid[k].expand(n), grid[k + 1].expand(n)
        if not use_cache or probs is None:
            probs = log_probs(predictor, z, t.to(device, torch.float32)).exp()
            evaluations += n
        elif stale.any():
            rows = stale.nonzero().squeeze(1)
            probs[rows] = log_probs(predictor, z[rows], t[rows].to(device, torch.float32)).exp()
            evaluations += len(rows)
        z_next = process.step(z, probs, t.to(device), s.to(device), generator)
        stale = (z_next != z).any(-1)
        z = z_next
    stats.nfe = evaluations / n
    return z, stats


@dataclass
class Trajectory:
    x: Tensor  # (n, L) final sample
    log_prob: Tensor  # (n,) float64 log-probability of the whole trajectory, differentiable
    states: list[Tensor]  # z before each step, (n, L) each
    times: Tensor  # (n, K + 1) the time grid of each row
    log_probs: list[Tensor]  # the predictor's float64 log p(x0 | z) (n, L, V) at each state, with graph


def rollout(predictor: Predictor, n: int, steps: int | None, process: MaskingProcess, length: int,
            generator: torch.Generator | None = None, times: Tensor | None = None,
            device: torch.device | str = "cpu", vocab: int | None = None,
            dtype: torch.dtype = torch.float64) -> Trajectory:
    """The ancestral sampler with the log-probability of each trajectory, differentiable in the
    predictor's parameters: sum over steps and masked positions of log p (unmask) + log p_theta(token),
    or log(1 - p) (stay masked). `times` (n, K + 1) from 1 to 0 gives each row its own grid
    (e.g. DiDi-Instruct's 2-step rollout through tau); otherwise the uniform `steps` grid. `dtype` of the
    log-probabilities: float64 for exact tests, float32 halves the cost for large vocabularies (sampling
    itself always draws float64 Gumbel noise)."""
    if times is None:
        times = time_grid(steps, process).expand(n, -1)
    times = times.to(torch.float64)
    if times.ndim != 2 or times.shape[0] != n or (times[:, 0] != 1).any() or (times[:, -1] != 0).any():
        raise ValueError(f"times must be (n, K+1) from 1 down to 0; got shape {tuple(times.shape)}")
    z = torch.full((n, length), process.mask_id, dtype=torch.long, device=device)
    log_prob = torch.zeros(n, dtype=torch.float64, device=device)
    states, step_logps = [], []
    for k in range(times.shape[1] - 1):
        t, s = times[:, k].to(device), times[:, k + 1].to(device)
        states.append(z)
        logp = log_probs(predictor, z, t.float(), vocab, dtype)
        step_logps.append(logp)
        z_next = process.step(z, logp.detach().exp(), t, s, generator)
        masked = z == process.mask_id
        unmasked = masked & (z_next != process.mask_id)
        p = unmask_prob(process, t, s)[:, None]
        token_lp = logp.gather(-1, torch.where(unmasked, z_next, 0)[..., None]).squeeze(-1)
        # masked -> token: log p + log p(token); masked -> masked: log(1 - p); observed: 0
        step_lp = torch.where(unmasked, torch.log(p) + token_lp.double(), torch.log1p(-p).expand_as(token_lp))
        log_prob = log_prob + torch.where(masked, step_lp, 0.0).sum(-1)
        z = z_next
    return Trajectory(z, log_prob, states, times, step_logps)


@dataclass
class Guidance:
    """Reward-guided ancestral sampling (DiDi-Instruct's RGAS): on the first `tilt_fraction` of the steps
    the logits are tilted by h * clip(grad of the discriminator's summed logit), h rising linearly from
    scale[0] to scale[1]; on the remaining steps `candidates` next states are drawn and one is picked
    with probability softmax(summed discriminator logit). scale (0, 0) and candidates 1 is the plain sampler."""

    scale: tuple[float, float] = (0.0, 0.0)
    tilt_fraction: float = 0.5
    candidates: int = 4
    grad_clip: float = 1.0

    def __post_init__(self):
        if not 0 <= self.tilt_fraction <= 1:
            raise ValueError(f"tilt_fraction = {self.tilt_fraction}; it must be in [0, 1]")
        if self.candidates < 1:
            raise ValueError(f"candidates = {self.candidates}; it must be >= 1")
        if len(self.scale) != 2:
            raise ValueError(f"scale must be (start, end), got {self.scale!r}")


Discriminator = Callable[..., Tensor]  # (z (B, L), t (B,), probs=None | (B, L, V)) -> logits (B, L) or (B,)


def _summed_logit(out: Tensor, z: Tensor | None, mask_id: int) -> Tensor:
    """(B,): a sequence logit as is, or per-token logits summed (over masked positions of z if given)."""
    if out.ndim == 1:
        return out
    return (out * (z == mask_id)).sum(-1) if z is not None else out.sum(-1)


def tilt(discriminator: Discriminator, logp: Tensor, z: Tensor, t: Tensor, h: float, clip: float,
         mask_id: int) -> Tensor:
    """log p + h * clip(d reward / d log p) at masked positions, renormalised; the discriminator reads soft
    inputs: softmax at masked positions, one-hot at observed ones."""
    with torch.enable_grad():
        lp = logp.detach().float().requires_grad_(True)
        onehot = torch.nn.functional.one_hot(z.clamp_max(lp.shape[-1] - 1), lp.shape[-1]).float()
        masked = (z == mask_id)[..., None]
        soft = torch.where(masked, torch.softmax(lp, -1), onehot)
        reward = _summed_logit(discriminator(z, t.float(), probs=soft), z, mask_id).sum()
        (grad,) = torch.autograd.grad(reward, lp)
    grad = torch.where(masked, grad.clamp(-clip, clip), torch.zeros_like(grad)).double()
    return torch.log_softmax(logp + h * grad, -1)


@torch.no_grad()
def guided_sample(predictor: Predictor, discriminator: Discriminator, n: int, steps: int, process: MaskingProcess,
                  length: int, guidance: Guidance, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu") -> tuple[Tensor, SampleStats]:
    """The N-step ancestral sampler with reward guidance (see Guidance); stats.extra counts the
    discriminator's forward and backward passes apart from the predictor's NFE."""
    grid = time_grid(steps, process)
    n_tilt = int(steps * guidance.tilt_fraction)  # truncated, as DiDi-Instruct's released sampler splits its steps
    h0, h1 = guidance.scale
    z = torch.full((n, length), process.mask_id, dtype=torch.long, device=device)
    stats = SampleStats(steps=steps, extra={"disc_forward": 0, "disc_backward": 0})
    for k in range(steps):
        t, s = grid[k].expand(n).to(device), grid[k + 1].expand(n).to(device)
        logp = log_probs(predictor, z, t.float())
        stats.nfe += 1
        if k < n_tilt:
            h = h0 + (h1 - h0) * (k / max(n_tilt - 1, 1))
            if h != 0:
                logp = tilt(discriminator, logp, z, t, h, guidance.grad_clip, process.mask_id)
                stats.extra["disc_forward"] += 1
                stats.extra["disc_backward"] += 1
            z = process.step(z, logp.exp(), t, s, generator)
        elif guidance.candidates == 1:
            z = process.step(z, logp.exp(), t, s, generator)
        else:
            cands = torch.stack([process.step(z, logp.exp(), t, s, generator) for _ in range(guidance.candidates)])
            flat = cands.flatten(0, 1)
            scores = _summed_logit(discriminator(flat, s.float().repeat(guidance.candidates)), None, process.mask_id)
            stats.extra["disc_forward"] += guidance.candidates
            pick = gumbel_argmax(torch.log_softmax(scores.view(guidance.candidates, n).T.double(), -1), generator)
            z = cands[pick, torch.arange(n, device=device)]
    return z, stats
