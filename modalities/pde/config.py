"""Configs of the PDE modality: `unidistill distill` (PDEConfig) and `unidistill teach` (PDETeachConfig)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from unidistill.engine.config import bounded
from unidistill.engine.recipe import ContinuousRecipe


@dataclass
class EvalConfig:
    n_samples: int = bounded(256, lo=2)  # student samples whose relative residual and channel spread are logged


@dataclass
class ConditionConfig:
    """An observation-conditioned student (conditional.py): one pass answers forward / inverse problems."""

    kinds: list[Literal["forward", "inverse"]] = field(default_factory=lambda: ["forward", "inverse"])
    fraction: float = bounded(0.03, lo=0, hi=1, lo_open=True)  # observed share of solution points
    instances: int = bounded(2000, lo=1)  # solver fields the training problems are drawn from (seed `seed`)
    data: str | None = None  # or the train split of a dataset folder (python -m unidistill.modalities.pde.data)
    seed: int = 0
    obs_weight: float = bounded(100.0, lo=0)  # weight of the mean squared misfit at observed entries (model space)
    eval_instances: int = bounded(32, lo=1)  # held-out problems (seed + 1) scored at each evaluation


def _recipe() -> ContinuousRecipe:
    return ContinuousRecipe(divergence={"name": "ikl", "weighting": "sigma2"},
                            time_sampler={"name": "karras", "n_grid": 64},
                            aux_time_sampler={"name": "lognormal", "p_mean": -0.6, "p_std": 1.4})


@dataclass
class PDEConfig:
    teacher: str = "darcy"  # shipped: darcy | poisson; or a PDE teacher folder (unet/, scheduler/, pde.json)
    student_sigmas: list[float] = bounded(lo=0, lo_open=True, factory=lambda: [5.0])  # EDM sigma of each step
    # the engine's recipe; the fake score is a copy of the teacher; no discriminator (fdiv and uni are refused);
    # reward `residual` {alpha, through: solution | all} is Phys-Instruct's PDE guidance, alpha its lambda
    distill: ContinuousRecipe = field(default_factory=_recipe)
    eval: EvalConfig = field(default_factory=EvalConfig)
    condition: ConditionConfig | None = None  # set: the student is conditioned on observations (one-pass solver)


@dataclass
class TeachEval:
    n_samples: int = bounded(64, lo=1)  # unconditional samples whose relative PDE residual is logged
    steps: int = bounded(18, lo=1)  # Heun steps of the probability-flow ODE for those samples


@dataclass
class PDETeachConfig:
    data: str  # dataset folder written by `python -m unidistill.modalities.pde.data`
    network: dict[str, Any]  # diffusers UNet2DModel config; in/out_channels = the PDE's channels
    scheduler: dict[str, Any] = field(default_factory=lambda: {
        "_class_name": "EDMEulerScheduler", "sigma_min": 0.002, "sigma_max": 80.0, "sigma_data": 1.0,
        "prediction_type": "epsilon"})  # EDM; fields are normalised to unit std per channel, so sigma_data = 1
    time_sampler: dict[str, Any] = field(default_factory=lambda: {"name": "lognormal", "p_mean": -0.6,
                                                                  "p_std": 1.4})
    eval: TeachEval = field(default_factory=TeachEval)
