"""A learned fake score for VSD/SIM on any 3D teacher: the frozen teacher's conditional denoiser plus a small
camera- and time-conditioned convolutional residual whose output layer starts at zero, so at step 0 the fake is
the teacher (what ProlificDreamer's LoRA fake should be and, initialised from another model, is not). The camera
(threestudio's flattened c2w) is dropped 10% of the time in training, as ProlificDreamer's LoRA does."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .views import View


def time_features(log_snr: Tensor, dim: int) -> Tensor:
    """Sinusoidal features (B, dim) of log(alpha / sigma)."""
    freqs = torch.exp(torch.arange(dim // 2, device=log_snr.device) * (-math.log(100.0) / max(dim // 2 - 1, 1)))
    angles = log_snr[:, None].float() * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], 1)


class ResidualFake(nn.Module):
    """D_psi(x_t, t, view) = D_teacher,conditional(x_t, t, view) + r_psi(x_t, t, camera, prompt)."""

    def __init__(self, teacher, process, prompts: int, hidden: int = 32, camera_dropout: float = 0.1,
                 channels: int = 3):
        super().__init__()
        if not 0 <= camera_dropout < 1:
            raise ValueError(f"camera_dropout must be in [0, 1), got {camera_dropout}")
        self._teacher = [teacher]  # not a submodule: its weights are frozen and not the fake's
        self.process, self.camera_dropout, self.hidden = process, camera_dropout, hidden
        self.cond = nn.Sequential(nn.Linear(16 + 16, 4 * hidden), nn.SiLU(), nn.Linear(4 * hidden, 4 * hidden))
        self.prompt = nn.Embedding(prompts, 4 * hidden)
        self.inp = nn.Conv2d(channels, hidden, 3, padding=1)
        self.mid = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.out = nn.Conv2d(hidden, channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x_t: Tensor, t: Tensor, view: View) -> Tensor:
        teacher = self._teacher[0]
        base = teacher(x_t, t, view, guidance=1.0)
        a, b = self.process.alpha(t), self.process.sigma(t)
        camera = view.cameras.embedding().to(x_t)
        if self.training and torch.is_grad_enabled() and self.camera_dropout > 0:
            keep = (torch.rand(len(camera), 1, device=camera.device) >= self.camera_dropout).to(camera)
            camera = camera * keep
        e = self.cond(torch.cat([camera, time_features(torch.log(a / b), 16).to(x_t)], 1))
        e = e + self.prompt(view.prompt.to(x_t.device))
        scale1, shift1, scale2, shift2 = e.chunk(4, 1)
        h = torch.nn.functional.silu(self.inp(x_t / torch.sqrt(a**2 + b**2)[:, None, None, None]))
        h = h * (1 + scale1[:, :, None, None]) + shift1[:, :, None, None]
        h = torch.nn.functional.silu(self.mid(h))
        h = h * (1 + scale2[:, :, None, None]) + shift2[:, :, None, None]
        return base + self.out(h)


class LoRAFake(nn.Module):
    """VSD's fake score for a learned teacher (ProlificDreamer): a copy of the teacher whose UNet gets LoRA adapters
    (peft; B starts at zero) on its attention projections and convolutions, with its camera/prompt conditioning
    trainable, so at step 0 it is the teacher's conditional denoiser. The camera is dropped (zeroed) 10% of the time
    in training."""

    TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"]

    def __init__(self, teacher, rank: int = 4, camera_dropout: float = 0.1):
        super().__init__()
        import copy

        from peft import LoraConfig, inject_adapter_in_model

        if not 0 <= camera_dropout < 1:
            raise ValueError(f"camera_dropout must be in [0, 1), got {camera_dropout}")
        self.copy = copy.deepcopy(teacher)
        net = self.copy.denoiser.net
        inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, target_modules=self.TARGETS), net)
        for name, p in net.named_parameters():
            p.requires_grad_("lora_" in name)
        if self.copy.conditioning is not None:  # a text teacher has no camera conditioning to adapt
            self.copy.conditioning.requires_grad_(True)
        self.camera_dropout = camera_dropout

    def forward(self, x_t: Tensor, t: Tensor, view: View) -> Tensor:
        if self.training and torch.is_grad_enabled() and self.camera_dropout > 0:
            keep = torch.rand(len(view), device=x_t.device) >= self.camera_dropout
            c2w = view.cameras.c2w * keep[:, None, None].to(view.cameras.c2w)
            view = View(view.prompt, type(view.cameras)(c2w, *(getattr(view.cameras, k) for k in
                                                               ("fovy", "azimuth", "elevation", "distance"))),
                        view.size, view.particle)
        return self.copy(x_t, t, view, guidance=1.0)
