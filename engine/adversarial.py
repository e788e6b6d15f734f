"""An adversarial term on the fake score, as DMD2 (Yin et al. 2024, sec. 4.3) and the GAN terms of SiD-with-
adversarial-loss and Uni-Instruct add it: a small classifier head reads the features of one layer of the fake
score network, averaged over positions (B, C, ...) or tokens (B, N, C), and is trained with the fake score to tell
noisy real samples (logit > 0) from noisy generator samples; the generator adds the non-saturating loss
`weight * softplus(-logit)` of its own noisy samples, whose gradient flows through the frozen fake score and head.

`distill.adversarial: {weight, fake_weight, hidden}` turns it on for any divergence with a fake score; the real
side is `distill.real` (teacher samples: data-free; data where the backend offers it). The backend names the
feature layer (`ContinuousParts.fake_features`)."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from .config import OptionError

FeatureLayer = Callable[[nn.Module], tuple[nn.Module, int]]  # fake score -> (the layer whose output is read, width)


class Adversarial:
    """The term's options: `weight` of the generator's non-saturating loss, `fake_weight` of the head's BCE in the
    fake score's loss (it also trains the fake score's layers below the features, so a large weight costs the fake
    score its accuracy: DMD2's ImageNet recipe uses 1e-2 here and 3e-3 for the generator), `hidden` width of the
    head."""

    def __init__(self, weight: float = 0.01, fake_weight: float = 0.01, hidden: int = 256):
        for name, v in (("weight", weight), ("fake_weight", fake_weight)):
            if not (math.isfinite(v) and v >= 0):
                raise OptionError(name, f"must be a finite number >= 0, got {v}")
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise OptionError("hidden", f"must be an integer >= 1, got {hidden!r}")
        self.weight, self.fake_weight, self.hidden = float(weight), float(fake_weight), hidden

    def classifier_loss(self, real_logit: Tensor, fake_logit: Tensor) -> Tensor:
        """Per-example BCE of the head, real labelled 1 and generator samples 0, times fake_weight."""
        return self.fake_weight * (F.softplus(-real_logit) + F.softplus(fake_logit))

    def generator_loss(self, logit: Tensor) -> Tensor:
        """Per-example non-saturating generator loss: weight * -log sigmoid(logit)."""
        return self.weight * F.softplus(-logit)


class FakeWithHead(nn.Module):
    """A fake score with a classifier head on one of its layers. Called like the fake score (the head is not
    run); `both` returns the denoiser output and the head's logit (B,) from one forward pass."""

    def __init__(self, fake: nn.Module, layer: FeatureLayer, hidden: int):
        super().__init__()
        self.fake = fake
        tapped, width = layer(fake)
        self.head = nn.Sequential(nn.Linear(width, hidden), nn.SiLU(), nn.Linear(hidden, 1))
        self._features: list[Tensor] = []
        tapped.register_forward_hook(self._capture)

    def _capture(self, module, inputs, output):
        if isinstance(output, tuple):  # diffusers blocks may return (hidden states, residuals)
            output = output[0]
        self._features.append(output)

    def forward(self, x_t: Tensor, t: Tensor, c=None) -> Tensor:
        out = self.fake(x_t, t, c)
        self._features.clear()
        return out

    def both(self, x_t: Tensor, t: Tensor, c=None) -> tuple[Tensor, Tensor]:
        self._features.clear()
        out = self.fake(x_t, t, c)
        if len(self._features) != 1:
            raise RuntimeError(f"the fake score's feature layer ran {len(self._features)} times in one forward; "
                               "the backend must name a layer that runs once")
        f = self._features.pop()
        width = self.head[0].in_features
        if f.ndim == 3 and f.shape[-1] == width and f.shape[1] != width:  # tokens (B, N, C)
            f = f.mean(1)
        elif f.ndim > 2:  # (B, C, ...)
            f = f.flatten(2).mean(-1)
        return out, self.head(f.to(self.head[0].weight.dtype)).squeeze(-1)

    def logit(self, x_t: Tensor, t: Tensor, c=None) -> Tensor:
        return self.both(x_t, t, c)[1]
