"""Typed configs of the text modality: `unidistill teach` (TeachConfig) and `unidistill distill` (TextConfig)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from unidistill.engine.config import ConfigError
from unidistill.engine.masked_sampling import Guidance


@dataclass
class TeachEval:
    n_samples: int = 64  # teacher samples drawn at each evaluation (texts saved beside the checkpoints)
    steps: int = 64  # ancestral sampling steps for those samples
    judge: str = "shipped"  # judge folder for their generative perplexity; "none" skips it
    held_out_blocks: int = 200  # held-out blocks for the NELBO / perplexity on unseen text


@dataclass
class TeachConfig:
    kind: Literal["mdlm", "judge"] = "mdlm"  # a masked diffusion teacher or the causal-LM judge
    corpus: str = "pydoc"  # "pydoc" (CPython docs, shipped with Python) or a local .txt/.json/.jsonl
    tokenizer: str = "shipped"  # "shipped" (byte-level BPE, 2048 tokens, trained on pydoc) or a folder
    length: int = 64  # tokens per training block (documents are packed with EOS between them)
    network: dict[str, Any] = field(default_factory=dict)  # MDLMConfig or GPT2Config keys
    eval: TeachEval = field(default_factory=TeachEval)


@dataclass
class RolloutConfig:
    steps: int = 2  # student sampling steps per training rollout (2: through tau, DiDi-Instruct's decomposition)
    tau: dict[str, Any] = field(default_factory=lambda: {"name": "beta", "a": 2.0, "b": 2.0})  # 2-step: tau law
    tau_range: list[float] = field(default_factory=lambda: [0.02, 0.999])  # tau is clamped to this range


@dataclass
class GuidanceConfig:
    scale: list[float] = field(default_factory=lambda: [0.0, 0.0])  # tilt strength h, start -> end (0 = off)
    tilt_fraction: float = 0.5  # share of the steps that tilt; the rest re-rank candidates
    candidates: int = 1  # candidates per re-ranked step (1 = off)
    grad_clip: float = 1.0  # element-wise clip of the discriminator gradient

    def build(self) -> Guidance:
        try:
            return Guidance(tuple(self.scale), self.tilt_fraction, self.candidates, self.grad_clip)
        except ValueError as e:
            raise ConfigError(f"config key guidance: {e}") from None


@dataclass
class TextEval:
    n_samples: int = 64  # student samples per evaluation
    steps: list[int] = field(default_factory=lambda: [16])  # sampling steps evaluated
    judge: str = "shipped"  # judge folder for generative perplexity ("none" skips it)


@dataclass
class TextConfig:
    teacher: str = "shipped"  # a masked diffusion LM folder (unidistill MDLM or a transformers masked LM)
    length: int | None = None  # generated tokens per sequence; None = the teacher's maximum
    corpus: str = "pydoc"  # the real side when real = corpus
    real: Literal["teacher", "corpus"] = "teacher"  # discriminator's real side: teacher samples (data-free) or text
    teacher_pool: int = 1024  # teacher samples drawn once for the data-free real side
    teacher_pool_steps: int = 64  # their sampling steps
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    divergence: dict[str, Any] = field(default_factory=lambda: {"name": "didi", "f": "rkl", "group_size": 4,
                                                                "clip": 3.0})
    coupled_time: bool = True  # corrupt at the rollout's tau (needs rollout.steps >= 2) instead of time_sampler
    time_sampler: dict[str, Any] = field(default_factory=lambda: {"name": "uniform"})  # when not coupled
    time_weight: Literal["inverse_t", "none"] = "inverse_t"  # omega(t) = 1/t clamped to [0.1, 10], or 1
    ism_weight: float = 0.01  # intermediate-state matching KL(teacher || student) weight
    entropy_weight: float = 0.0005  # entropy bonus weight
    trainable_blocks: int = 1  # discriminator: unfrozen teacher blocks at the top
    reuse_rollouts: bool = True  # the discriminator's fake side is the previous generator step's rollout
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)  # reward-guided sampler (evaluation, sample)
    eval: TextEval = field(default_factory=TextEval)
