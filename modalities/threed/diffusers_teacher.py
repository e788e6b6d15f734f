"""A Stable-Diffusion-shaped 3D teacher: any text-conditioned diffusers pipeline folder on disk (UNet2DConditionModel,
text encoder and tokenizer, optionally a VAE), through the shared diffusers layer. Renders are encoded by the
teacher's VAE with the gradient kept through the encoder, as threestudio does (the posterior's mode, not a sample,
so a render has one encoding); prompts are text, with threestudio's view-dependent suffixes when
`teacher.view_prompts` is set. A user with Stable Diffusion on disk distils it by pointing `teacher.path` at it."""
from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from ..shared.guidance import uncond_first_scale
from ..shared.teacher import load_teacher
from .views import BINS, View, view_bin

SUFFIXES = {"front": "front view", "left": "side view", "back": "back view", "right": "side view"}


class TextTeacher(nn.Module):
    """D(x_t, t, view) of a text-conditioned diffusers teacher; the row's prompt (and sector) picks its text."""

    conditioning = None  # no camera conditioning: the camera enters only through view-dependent prompts

    def __init__(self, folder: Path, prompts: list[str], guidance: float, convention: str, view_prompts: bool):
        super().__init__()
        texts = [f"{p}, {SUFFIXES[b]}" for p in prompts for b in BINS] if view_prompts else list(prompts)
        teacher = load_teacher(folder, guidance_scale=uncond_first_scale(guidance, convention), prompts=texts)
        self.denoiser, self.vae = teacher.denoiser, teacher.vae
        self.process, self.view_prompts = self.denoiser.process, view_prompts
        size = self.denoiser.size
        self.latent_size = size if isinstance(size, int) else size[0]
        self.factor = 1 if self.vae is None else 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.size = self.latent_size * self.factor  # the render size the teacher takes

    def index(self, view: View) -> Tensor:
        p = view.prompt.to(self.denoiser.cond_table.device)
        return p * len(BINS) + view_bin(view.cameras.azimuth).to(p.device) if self.view_prompts else p

    def forward(self, x_t: Tensor, t: Tensor, view: View, guidance: float | None = None) -> Tensor:
        return self.denoiser(x_t, t, self.index(view), guidance_scale=guidance)

    def encode(self, rgb: Tensor) -> Tensor:
        """Renders in [0, 1] (B, 3, H, W) -> the teacher's space (scaled VAE latents, or [-1, 1] pictures)."""
        x = 2 * rgb - 1
        if self.vae is None:
            return x
        cfg = self.vae.config
        z = self.vae.encode(x.to(next(self.vae.parameters()).dtype)).latent_dist.mode()
        return ((z - (getattr(cfg, "shift_factor", None) or 0.0)) * cfg.scaling_factor).float()
