"""Config of the toy_markov modality."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from unidistill.engine.config import bounded
from unidistill.engine.recipe import DiscreteRecipe


def _recipe() -> DiscreteRecipe:
    return DiscreteRecipe(divergence={"name": "didi", "f": "rkl", "group_size": 8}, corruptions=4, real="data")


@dataclass
class MarkovConfig:
    chain: dict[str, Any]  # {init: [V], transition: [[V x V]], length: L}
    steps: int = bounded(4, lo=1)  # student sampling steps (network evaluations per sample)
    hidden: int = bounded(128, lo=1)  # width of the student and discriminator MLPs
    ratio: Literal["discriminator", "oracle"] = "discriminator"  # oracle: exact log ratio (tests, ablations)
    warm_start_steps: int = bounded(300, lo=0)  # fit the student to the teacher's masked conditionals first
    eval_teacher_steps: list[int] = bounded(lo=1, factory=lambda: [2, 4, 16])  # teacher's own sampler, for reference
    # the engine's recipe; real source: data (the chain); reward: count {token} (occurrences of a token), measured
    # against the exact tilted chain p* ~ p exp(r / beta), beta = 1 / alpha
    distill: DiscreteRecipe = field(default_factory=_recipe)
