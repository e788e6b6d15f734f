"""Configs of the image modality: `unidistill distill` (ImageConfig) and `unidistill teach` (TeachConfig)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from unidistill.engine.config import bounded
from unidistill.engine.recipe import ContinuousRecipe


@dataclass
class EvalConfig:
    n_samples: int = bounded(1000, lo=2)  # samples for digits-FID / class accuracy (digits teachers only)


def _recipe() -> ContinuousRecipe:
    return ContinuousRecipe(divergence={"name": "sim"},
                            time_sampler={"name": "lognormal", "p_mean": -0.4, "p_std": 1.6},
                            aux_time_sampler={"name": "lognormal", "p_mean": -1.2, "p_std": 1.2})


@dataclass
class ImageConfig:
    teacher: str = "digits"  # shipped: digits (EDM) | digits_flow (rectified flow); or a local diffusers folder
    guidance_scale: float = bounded(1.0, lo=0, hi=100)  # classifier-free guidance w in the teacher (1 = none)
    prompts: list[str] | None = None  # text-conditioned teachers: the prompts to distil on
    student_sigmas: list[float] = bounded(lo=0, lo_open=True, factory=lambda: [2.5])  # EDM sigma/alpha per step
    # the engine's recipe; the fake score is a copy of the teacher (no options), the discriminator takes
    # {width}; real sources: teacher (a pool of teacher samples: data-free) or data (digits teachers only);
    # rewards: classifier (log p(class | x) under the shipped digits classifier), contrast
    distill: ContinuousRecipe = field(default_factory=_recipe)
    real_pool: int = bounded(2000, lo=1)  # teacher samples drawn once (18 Heun steps) as the data-free real side
    eval: EvalConfig = field(default_factory=EvalConfig)


@dataclass
class TeachEval:
    n_samples: int = bounded(1000, lo=2)  # samples drawn for digits-FID at the end (and every train.eval_every)
    steps: int = bounded(18, lo=1)  # Heun steps of the probability-flow ODE used for those samples
    guidance_scale: float = bounded(1.0, lo=0, hi=100)  # classifier-free guidance used for those samples


@dataclass
class TeachConfig:
    network: dict[str, Any]  # diffusers UNet2DModel config; class labels need num_class_embeds = classes + 1 (null)
    scheduler: dict[str, Any]  # diffusers scheduler config with _class_name (EDM, flow-matching or DDPM family)
    data: str = "digits"  # "digits" (scikit-learn, train split) or an .npz with x (N, C, H, W) in [-1, 1], y (N,)
    time_sampler: dict[str, Any] = field(default_factory=lambda: {"name": "lognormal", "p_mean": -1.2, "p_std": 1.2})
    label_dropout: float = bounded(0.1, lo=0, hi=1, hi_open=True)  # rate of null-class inputs, for CFG
    eval: TeachEval = field(default_factory=TeachEval)
