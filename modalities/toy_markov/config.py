"""Config of the toy_markov modality."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from unidistill.engine.recipe import DiscreteRecipe


def _recipe() -> DiscreteRecipe:
    return DiscreteRecipe(divergence={"name": "didi", "f": "rkl", "group_size": 8}, corruptions=4, real="data")


@dataclass
class MarkovConfig:
    chain: dict[str, Any]  # {init: [V], transition: [[V x V]], length: L}
    steps: int = 4  # student sampling steps (network evaluations per sample)
    hidden: int = 128  # width of the student and discriminator MLPs
    ratio: Literal["discriminator", "oracle"] = "discriminator"  # oracle: exact log ratio (tests, ablations)
    warm_start_steps: int = 300  # fit the student to the teacher's masked conditionals first (init from teacher)
    eval_teacher_steps: list[int] = field(default_factory=lambda: [2, 4, 16])  # teacher's own sampler, for reference
    distill: DiscreteRecipe = field(default_factory=_recipe)  # the engine's recipe; real source: data (the chain)
