"""Config of the gauss1d modality: the teacher N(mean, std^2), the MLP width, and the engine's recipe."""
from __future__ import annotations

from dataclasses import dataclass, field

from unidistill.engine.recipe import ContinuousRecipe


@dataclass
class Gauss1DConfig:
    mean: float = 1.0  # teacher mean
    std: float = 0.5  # teacher standard deviation
    hidden: int = 32  # width of the generator, fake-score and discriminator MLPs
    distill: ContinuousRecipe = field(default_factory=lambda: ContinuousRecipe(divergence={"name": "sid"},
                                                                               real="data"))

    def __post_init__(self):
        if not self.std > 0:
            raise ValueError(f"std must be > 0, got {self.std}")
