"""The exact 3D teacher: per prompt, a mixture over renders of known scenes,

    p0(x | camera, prompt) = sum_j pi_j(prompt, camera) N(x; render_j(camera), s0^2 I),

whose diffused denoiser, score and density are closed form at every noise level (modalities.shared.mixture), with
the prompt-marginal mixture as the unconditional branch of classifier-free guidance. Images live in [-1, 1].

The Janus case (`janus_front`): a view-independent prompt shows the scene as seen from its front sector from every
camera with weight `janus_front` (the rest spread over the other three sectors), so the best 3D scene is
multi-faced; `view_prompts` bins each camera's azimuth (front, left, back, right) and asks for that sector, which
puts all weight on the true render and removes it. The exact fake of VSD/SIM is the same mixture over the
particles' current renders (`ParticleMixture`)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from unidistill.engine.process import GaussianProcess

from ..shared import mixture
from ..shared.guidance import guide, uncond_first_scale
from .cameras import Cameras
from .render import render
from .scenes import Scene
from .views import BINS, View, seen_from, view_bin


def to_model(rgb: Tensor) -> Tensor:
    """[0, 1] pictures -> the diffusion space [-1, 1]."""
    return 2 * rgb - 1


class RenderMixtureTeacher(nn.Module):
    """D_p(x_t, t, view): the guided closed-form denoiser of the mixture over renders of `scenes` under `weights`
    (prompts x scenes). Guidance is uncond-first `D_u + w (D_c - D_u)` unless `convention` says text-first."""

    def __init__(self, scenes: list[Scene], weights: Tensor, process: GaussianProcess, s0: float = 0.1,
                 bound: float = 1.0, n_samples: int = 64, background=(1.0, 1.0, 1.0), guidance: float = 1.0,
                 convention: str = "uncond_first", janus_front: float | None = None, view_prompts: bool = False):
        super().__init__()
        if weights.ndim != 2 or weights.shape[1] != len(scenes):
            raise ValueError(f"weights must be (prompts, {len(scenes)} scenes), got {tuple(weights.shape)}")
        self.fields = [s.field() for s in scenes]
        self.register_buffer("weights", weights / weights.sum(1, keepdim=True))
        self.process, self.s0, self.bound, self.n_samples = process, float(s0), bound, n_samples
        self.register_buffer("background", torch.tensor(background, dtype=torch.float32))
        self.guidance, self.convention = float(guidance), convention
        self.janus_front, self.view_prompts = janus_front, view_prompts
        self._cache: tuple | None = None

    def render_scene(self, k: int, cameras: Cameras, size: int) -> Tensor:
        """Scene k from each camera, (B, 3, size, size) in [-1, 1]; midpoint samples, so a fixed function."""
        with torch.no_grad():
            out = render(self.fields[k], cameras, size, size, n_samples=self.n_samples,
                         background=self.background.to(cameras.c2w), bound=self.bound)
        return to_model(out.rgb)

    def view_weights(self, cameras: Cameras) -> Tensor:
        """(B, V) weight of each sector's render; V = 1 (the true render) without the Janus case."""
        if self.janus_front is None:
            return cameras.c2w.new_ones(len(cameras), 1)
        if self.view_prompts:
            return nn.functional.one_hot(view_bin(cameras.azimuth), len(BINS)).to(cameras.c2w)
        rest = (1 - self.janus_front) / (len(BINS) - 1)
        w = torch.tensor([self.janus_front] + [rest] * (len(BINS) - 1), dtype=cameras.c2w.dtype)
        return w.to(cameras.c2w.device).expand(len(cameras), -1)

    def components(self, view: View) -> tuple[Tensor, Tensor, Tensor]:
        """means (B, J, 3, H, W) and log weights (B, J) of the conditional and the unconditional mixtures,
        J = scenes x sectors; cached for the last view (a step asks several times about the same one)."""
        if self._cache is not None and self._cache[0] is view.cameras and self._cache[1] == view.size:
            means = self._cache[2]
        else:
            cams = [view.cameras] if self.janus_front is None else [seen_from(view.cameras, v) for v in range(4)]
            means = torch.stack([self.render_scene(k, c, view.size) for k in range(len(self.fields)) for c in cams], 1)
            self._cache = (view.cameras, view.size, means)
        sector = self.view_weights(view.cameras)  # (B, V)
        cond = self.weights[view.prompt.to(self.weights.device)]  # (B, K)
        uncond = self.weights.mean(0).expand_as(cond)
        log = lambda w: torch.log((w[:, :, None] * sector[:, None, :]).flatten(1).to(means.dtype))
        return means, log(cond), log(uncond)

    def forward(self, x_t: Tensor, t: Tensor, view: View, guidance: float | None = None) -> Tensor:
        """The guided denoiser (B, 3, H, W); `guidance` overrides the teacher's scale (1.0: the conditional one)."""
        a, b = self.process.alpha(t), self.process.sigma(t)
        means, log_c, log_u = self.components(view)
        d_c = mixture.denoise(x_t, means, log_c, a, b, self.s0)
        scale, convention = (self.guidance, self.convention) if guidance is None else (guidance, "uncond_first")
        if uncond_first_scale(scale, convention) == 1.0:
            return d_c
        return guide(d_c, mixture.denoise(x_t, means, log_u, a, b, self.s0), scale, convention)

    def log_density(self, x_t: Tensor, t: Tensor, view: View) -> Tensor:
        """log p_t(x_t | view) (B,) of the conditional mixture (guidance has no density)."""
        means, log_c, _ = self.components(view)
        return mixture.log_density(x_t, means, log_c, self.process.alpha(t), self.process.sigma(t), self.s0)

    def sample(self, view: View, u: Tensor, eps: Tensor) -> Tensor:
        """x0 (B, 3, H, W) from the conditional mixture (u (B,) uniform, eps standard normal like x0): the
        discriminator's real side."""
        means, log_c, _ = self.components(view)
        return mixture.sample(means, log_c, self.s0, u, eps)


class ParticleMixture(nn.Module):
    """The exact fake score of a particle generator: the diffused mixture, with the teacher's s0, over the current
    renders of every particle of the row's prompt from the row's camera (equal weights). It holds no parameters:
    the generator is reached through `generator()` and rendered without a graph, so the engine queries it as an
    exact critic and never trains it. `teacher` given, it is also the exact density ratio log p_t - log q_t
    (`ratio=True`: the discriminator role)."""

    def __init__(self, generator, s0: float, process: GaussianProcess, teacher: RenderMixtureTeacher | None = None,
                 ratio: bool = False):
        super().__init__()
        self.generator, self.s0, self.process = generator, float(s0), process
        self.teacher, self.ratio = teacher, ratio

    def components(self, view: View) -> tuple[Tensor, Tensor]:
        g = self.generator()
        n = g.per_prompt
        particles = view.prompt[:, None] * n + torch.arange(n, device=view.prompt.device)  # (B, N)
        rows = torch.arange(len(view), device=view.prompt.device).repeat_interleave(n)
        with torch.no_grad():
            means = g.render(particles.flatten(), view.cameras.select(rows), view.size)
        means = means.reshape(len(view), n, *means.shape[1:])
        return means, means.new_zeros(len(view), n)

    def log_density(self, x_t: Tensor, t: Tensor, view: View) -> Tensor:
        means, log_w = self.components(view)
        return mixture.log_density(x_t, means, log_w, self.process.alpha(t), self.process.sigma(t), self.s0)

    def forward(self, x_t: Tensor, t: Tensor, view: View) -> Tensor:
        if self.ratio:  # log r = log p_t - log q_t, teacher over student
            return self.teacher.log_density(x_t, t, view) - self.log_density(x_t, t, view)
        means, log_w = self.components(view)
        return mixture.denoise(x_t, means, log_w, self.process.alpha(t), self.process.sigma(t), self.s0)

