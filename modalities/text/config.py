"""Typed configs of the text modality: `unidistill teach` (TeachConfig) and `unidistill distill` (TextConfig)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from unidistill.engine.config import ConfigError, bounded
from unidistill.engine.recipe import DiscreteRecipe


@dataclass
class TeachEval:
    n_samples: int = bounded(64, lo=1)  # teacher samples drawn at each evaluation (texts saved beside checkpoints)
    steps: int = bounded(64, lo=1)  # ancestral sampling steps for those samples
    judge: str = "shipped"  # judge folder for their generative perplexity; "none" skips it
    held_out_blocks: int = bounded(200, lo=1)  # held-out blocks for the NELBO / perplexity on unseen text


@dataclass
class TeachConfig:
    kind: Literal["mdlm", "judge"] = "mdlm"  # a masked diffusion teacher or the causal-LM judge
    corpus: str = "python"  # "python" (CPython docs + stdlib docstrings), "pydoc" (the docs) or a local file
    tokenizer: str = "shipped"  # "shipped" (byte-level BPE, 2048 tokens, trained on pydoc) or a folder
    length: int = bounded(64, lo=2)  # tokens per training block (documents are packed with EOS between them)
    network: dict[str, Any] = field(default_factory=dict)  # MDLMConfig or GPT2Config keys
    eval: TeachEval = field(default_factory=TeachEval)


@dataclass
class RolloutConfig:
    steps: int = bounded(2, lo=1)  # student sampling steps per training rollout (2: through tau, DiDi-Instruct's)
    tau: dict[str, Any] = field(default_factory=lambda: {"name": "beta", "a": 2.0, "b": 2.0})  # 2-step: tau law
    tau_range: list[float] = field(default_factory=lambda: [0.02, 0.999])  # tau is clamped to this range


@dataclass
class GuidanceConfig:
    # tilt strength h, start -> end (0 = off)
    scale: list[float] = bounded(factory=lambda: [0.0, 0.0], length=2, meaning="[start, end]")
    tilt_fraction: float = bounded(0.5, lo=0, hi=1)  # share of the steps that tilt; the rest re-rank candidates
    candidates: int = bounded(1, lo=1)  # candidates per re-ranked step (1 = off)
    grad_clip: float = bounded(1.0, lo=0, lo_open=True)  # element-wise clip of the discriminator gradient

    @property
    def active(self) -> bool:
        """Whether sampling is guided at all (a tilt or a re-ranking)."""
        return any(h != 0 for h in self.scale) or self.candidates > 1

    def build(self):
        """The engine's Guidance for the reward-guided sampler."""
        from unidistill.engine.masked_sampling import Guidance

        try:
            return Guidance(tuple(self.scale), self.tilt_fraction, self.candidates, self.grad_clip)
        except ValueError as e:
            raise ConfigError(f"config key guidance: {e}") from None


@dataclass
class TextEval:
    n_samples: int = bounded(64, lo=1)  # student samples per evaluation
    steps: list[int] = bounded(lo=1, factory=lambda: [16])  # sampling steps evaluated
    judge: str = "shipped"  # judge folder for generative perplexity ("none" skips it)


def _recipe() -> DiscreteRecipe:
    return DiscreteRecipe(divergence={"name": "didi", "f": "rkl", "group_size": 4, "clip": 3.0}, coupled_time=True,
                          time_weight="inverse_t", ism_weight=0.01, entropy_weight=0.0005, reuse_rollouts=True,
                          real="teacher")


@dataclass
class TextConfig:
    teacher: str = "shipped"  # a masked diffusion LM folder (unidistill MDLM or a transformers masked LM)
    length: int | None = bounded(None, lo=2)  # generated tokens per sequence; None = the teacher's maximum
    corpus: str = "python"  # the real side when distill.real = corpus
    teacher_pool: int = bounded(1024, lo=1)  # teacher samples drawn once for the data-free real side
    teacher_pool_steps: int = bounded(64, lo=1)  # their sampling steps
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    # the engine's recipe (DiDi-Instruct's settings by default); the discriminator takes {trainable_blocks}
    # (unfrozen teacher blocks at the top); real sources: teacher (pool: data-free) or corpus
    distill: DiscreteRecipe = field(default_factory=_recipe)
    # reward-guided sampler for evaluation and `unidistill sample` (with the run's discriminator)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    eval: TextEval = field(default_factory=TextEval)
