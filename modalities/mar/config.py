"""Configs of the MAR modality: `unidistill teach` (MarTeachConfig: a MAR teacher on the digits) and `unidistill
distill` (MarConfig: MARVAL one-step heads, the DD-style baseline, MARVAL-RL)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from unidistill.engine.config import bounded
from unidistill.engine.recipe import ContinuousRecipe


@dataclass
class TransformerSize:
    width: int = bounded(128, lo=8)
    depth: int = bounded(2, lo=1)  # encoder blocks (visible tokens and the class buffer)
    decoder_depth: int = bounded(2, lo=1)  # decoder blocks (every position, mask tokens where masked)
    heads: int = bounded(4, lo=1)
    buffer: int = bounded(4, lo=1)  # class tokens prepended (MAR: 64 for 256 tokens)
    label_dropout: float = bounded(0.1, lo=0, hi=1, hi_open=True)  # rate of the null class, for guidance


@dataclass
class HeadSize:
    width: int = bounded(128, lo=8)
    depth: int = bounded(3, lo=1)  # residual adaLN blocks (MAR-B: 6 x 1024)


@dataclass
class SampleConfig:
    n_samples: int = bounded(1000, lo=2)  # samples (classes in turn) for digits-FID and class accuracy
    iters: int = bounded(8, lo=1)  # K unmasking iterations
    steps: int = bounded(50, lo=1)  # T head steps per token (teacher sampling)
    guidance: float = bounded(1.0, lo=0, hi=100)  # guidance scale w on eps (1 = none)
    cfg_schedule: Literal["linear", "constant"] = "linear"  # MAR's ramp 1 -> w over the iterations, or constant
    temperature: float = bounded(1.0, lo=0)  # scales the noise of each head step (MAR's temperature)


@dataclass
class MarTeachConfig:
    patch: int = 2  # p x p patches of the 8x8 digits: 2 -> 16 tokens of 4 numbers, 4 -> 4 tokens of 16
    transformer: TransformerSize = field(default_factory=TransformerSize)
    head: HeadSize = field(default_factory=HeadSize)
    mask_min: float = bounded(0.7, lo=0, hi=1, hi_open=True)  # mask ratio ~ truncated normal on [mask_min, 1]
    head_batch_mul: int = bounded(4, lo=1)  # noise draws per masked token (MAR's diffusion_batch_mul)
    eval: SampleConfig = field(default_factory=SampleConfig)


@dataclass
class TeacherConfig:
    path: str = "shipped"  # a MAR folder (`unidistill teach`), or the one in the package
    # the exact kernel mixture over the training digits as the teacher (s0 its width); the learned transformer
    # still reads each token's context for the student and the fake score
    exact: bool = False
    s0: float = bounded(0.15, lo=0, lo_open=True)
    guidance: float = bounded(1.0, lo=0, hi=100)  # guidance scale w of the teacher's score (1 = none)
    cfg_schedule: Literal["linear", "constant"] = "linear"


@dataclass
class GeneratorConfig:
    iters: int = bounded(8, lo=1)  # K unmasking iterations of the student (one transformer pass each)
    # sigma/alpha of each head step; [2.5]: a one-step head started from the teacher's head at that noise level
    sigmas: list[float] = bounded(lo=0, lo_open=True, factory=lambda: [2.5])
    train_transformer: bool = False  # the student's transformer trained too (else frozen at the teacher's)
    context_grad: bool = False  # gradients through the context tokens into earlier iterations (MARVAL-RL)


@dataclass
class BaselineConfig:
    # "dd": Distilled-Decoding-style regression of the teacher head's deterministic (DDIM) output from the same
    # noise, on the student's own contexts (use with distill.divergence none); "none": off
    name: Literal["none", "dd"] = "none"
    steps: int = bounded(50, lo=1)  # DDIM steps of the regression target


@dataclass
class StudentEval:
    n_samples: int = bounded(1000, lo=2)  # samples (classes in turn) for digits-FID and class accuracy
    iters: int = bounded(8, lo=1)  # K unmasking iterations of the student at evaluation and `unidistill sample`


def _recipe() -> ContinuousRecipe:
    return ContinuousRecipe(divergence={"name": "sim"}, time_sampler={"name": "uniform"},
                            aux_time_sampler={"name": "uniform"})


@dataclass
class MarConfig:
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    # the engine's recipe, applied per token (one time per token); divergence sim (MARVAL's GSIM) | ikl | sid |
    # fgm | sds | none; the fake score is a trainable copy of the teacher's head (no options); rewards: classifier
    distill: ContinuousRecipe = field(default_factory=_recipe)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    eval: StudentEval = field(default_factory=StudentEval)
