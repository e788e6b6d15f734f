"""What `unidistill sample` needs for a 3D run: the particles, and renders of them from random cameras."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from unidistill.engine.backend import Drawn, Sampler
from unidistill.engine.noise import Noise

from .config import ThreeDConfig
from .generators import Amortised, Particles


def prompts_of(cfg: ThreeDConfig) -> dict:
    """The run's prompts: the config's, or the learned teacher folder's."""
    if cfg.teacher.path is None:
        return cfg.teacher.prompts
    from .learned import SHIPPED

    folder = SHIPPED if cfg.teacher.path == "shipped" else Path(cfg.teacher.path)
    if not (folder / "threed.json").is_file():  # a text teacher: the config's prompts are its text
        return cfg.teacher.prompts
    return json.loads((folder / "threed.json").read_text())["prompts"]


def generator_for(cfg: ThreeDConfig, prompts: int | None = None):
    """The config's generator: Particles or Amortised."""
    g, r = cfg.generator, cfg.render
    prompts = len(prompts_of(cfg)) if prompts is None else prompts
    if g.kind == "amortised":
        return Amortised(prompts, g.per_prompt, g.latent_dim, g.hidden, g.coarse, g.resolution, g.bound,
                         r.n_samples, tuple(r.background), g.blob, g.blob_radius)
    return Particles(prompts, g.per_prompt, g.resolution, g.bound, r.n_samples, tuple(r.background),
                     g.learn_background, g.blob, g.blob_radius, g.init_std)


def sampler(cfg: ThreeDConfig) -> Sampler:
    from .distill import draw_views, ranges_of

    ranges, size = ranges_of(cfg), cfg.eval.size

    def draw(g, n: int, seed: int) -> Drawn:
        noise = Noise(seed)
        if isinstance(g, Amortised):
            prompt = noise.randint(g.prompts, n)
            view = draw_views(noise, n, prompt, ranges, False, size)
            z, what = noise.randn(n, g.latent_dim), "random scenes"
            cond = prompt
        else:
            cond = noise.randint(len(g), n)
            view = draw_views(noise, n, g.prompt_of(cond), ranges, False, size)
            z, what = cond, "random particles"
        with torch.no_grad():
            x = (2 * g.rendered(z, view.cameras, size).rgb - 1 if isinstance(g, Particles)
                 else 2 * g.rendered_z(z, view.prompt, view.cameras, size).rgb - 1).numpy()
        return Drawn(x, cond.numpy(), about=f"renders (N, 3, {size}, {size}) in [-1, 1] of {what} from random "
                                           "cameras; conditions: the particle (amortised: prompt) index")

    return Sampler(generator_for(cfg), draw, images=lambda v: np.clip((v.transpose(0, 2, 3, 1) + 1) / 2, 0, 1))
