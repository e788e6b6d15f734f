"""Exact metrics of the toy chain's student: its N-step distribution's KL to the target, and for a reward run
its KL to the exact tilted optimum p*(x) ~ p(x) exp(r(x) / beta) (enumerated) and its mean reward beside p*'s."""
from __future__ import annotations

import torch

from unidistill.engine.metrics import exact_kl

from .chain import all_sequences
from .plots import plot_histogram
from .student import exact_distribution, teacher_predictor


class ChainEvaluator:
    """Exact KL(student N-step || target) and the teacher's own N-step sampler's KL for reference."""

    def __init__(self, chain, process, steps: int, teacher_steps: list[int], tilt=None):
        self.chain, self.process, self.steps = chain, process, steps
        xs, self.target = chain.enumerate()
        self.reward = self.optimum = None
        if tilt is not None:  # (reward, beta): p* over every sequence
            fn, beta = tilt
            self.reward = fn(xs).double()
            log_star = self.target.log() + self.reward / beta
            self.optimum = (log_star - torch.logsumexp(log_star, 0)).exp()
        self.teacher_kl = {k: _kl(exact_distribution(teacher_predictor(chain), k, process, chain.vocab,
                                                     chain.length), self.target) for k in teacher_steps}

    @torch.no_grad()
    def distribution(self, student) -> torch.Tensor:
        return exact_distribution(student, self.steps, self.process, self.chain.vocab, self.chain.length)

    def __call__(self, student) -> dict[str, float]:
        p = self.distribution(student)
        out = {f"kl_student_{self.steps}step": _kl(p, self.target)}
        if self.optimum is not None:
            p = p.double() / p.sum()
            out.update({"kl_optimum": _kl(p, self.optimum), "reward": float(p @ self.reward),
                        "reward_optimum": float(self.optimum @ self.reward),
                        "kl_teacher_of_optimum": _kl(self.optimum, self.target)})
        out.update({f"kl_teacher_{k}step": v for k, v in self.teacher_kl.items()})
        return out

    def picture(self, student, path):
        xs = all_sequences(self.chain.vocab, self.chain.length)
        labels = ["".join(map(str, row.tolist())) for row in xs]
        kl = _kl(self.distribution(student), self.target)
        return plot_histogram(labels, self.distribution(student).numpy(), self.target.numpy(), path,
                              title=f"{self.steps}-step student vs target (exact KL {kl:.4f})")


def _kl(p: torch.Tensor, q: torch.Tensor) -> float:
    return exact_kl(p.double() / p.sum(), q.double())
