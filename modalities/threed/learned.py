"""A learned 3D teacher: a diffusers UNet2DModel conditioned on the camera and the prompt, trained by
`unidistill teach` on renders of the ground-truth scenes, and its folder on disk.

The condition enters as the UNet's class embedding (`class_embed_type: identity`), added to its time embedding:
an MLP of the camera's flattened c2w (threestudio's "extrinsics" condition) plus a learned prompt embedding, whose
last row is the null prompt of classifier-free guidance. The network's parameterisation (eps on Stable Diffusion's
discrete schedule by default) is the shared diffusers layer's. Folder layout: unet/ and scheduler/ as diffusers
writes them, conditioning.safetensors, threed.json (prompts, scenes and weights, render settings)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from ..shared.denoiser import DiffusersDenoiser
from ..shared.guidance import guide, uncond_first_scale
from .cameras import Cameras
from .views import View


class CameraConditioning(nn.Module):
    """(cameras, prompt index) -> (B, dim) class embedding; prompt index `prompts` is the null prompt."""

    def __init__(self, prompts: int, dim: int):
        super().__init__()
        self.prompts = prompts
        self.camera = nn.Sequential(nn.Linear(16, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.prompt = nn.Embedding(prompts + 1, dim)

    def forward(self, cameras: Cameras, prompt: Tensor) -> Tensor:
        return self.camera(cameras.embedding().float()) + self.prompt(prompt.to(self.prompt.weight.device))


class LearnedTeacher(nn.Module):
    """D(x_t, t, view) of the camera- and prompt-conditioned network; guidance as in shared.guidance."""

    def __init__(self, denoiser: DiffusersDenoiser, conditioning: CameraConditioning, guidance: float = 1.0,
                 convention: str = "uncond_first"):
        super().__init__()
        self.denoiser, self.conditioning = denoiser, conditioning
        self.process = denoiser.process
        self.guidance, self.convention = float(guidance), convention
        self.size = denoiser.size

    def forward(self, x_t: Tensor, t: Tensor, view: View, guidance: float | None = None) -> Tensor:
        scale, convention = (self.guidance, self.convention) if guidance is None else (guidance, "uncond_first")
        cond = self.conditioning(view.cameras, view.prompt).to(x_t.dtype)
        if uncond_first_scale(scale, convention) == 1.0:
            return self.denoiser(x_t, t, cond)
        null = self.conditioning(view.cameras, torch.full_like(view.prompt, self.conditioning.prompts)).to(x_t.dtype)
        d_c, d_u = self.denoiser(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([cond, null])).chunk(2)
        return guide(d_c, d_u, scale, convention)


def save_teacher(teacher: LearnedTeacher, scheduler: dict, info: dict, folder: Path) -> Path:
    """folder/unet, folder/scheduler, folder/conditioning.safetensors and folder/threed.json, written atomically."""
    from safetensors.torch import save_file

    from ..shared.folders import write_network_folder

    folder = write_network_folder(teacher.denoiser, scheduler, Path(folder))
    state = {k: v.detach().cpu().contiguous() for k, v in teacher.conditioning.state_dict().items()}
    save_file(state, str(folder / "conditioning.safetensors.tmp"))
    os.replace(folder / "conditioning.safetensors.tmp", folder / "conditioning.safetensors")
    (folder / "threed.json.tmp").write_text(json.dumps(info, indent=2))
    os.replace(folder / "threed.json.tmp", folder / "threed.json")
    return folder


def load_teacher(folder: str | Path, guidance: float = 1.0, convention: str = "uncond_first"
                 ) -> tuple[LearnedTeacher, dict]:
    """(teacher, threed.json) of a 3D teacher folder; a folder that is not one is named in one line."""
    from diffusers import UNet2DModel
    from safetensors.torch import load_file

    from ..shared.folders import load_weights, read_json, read_scheduler

    folder = Path(folder)
    for need in ("threed.json", "conditioning.safetensors", "unet", "scheduler"):
        if not (folder / need).exists():
            raise FileNotFoundError(f"{folder} is not a 3D teacher folder (no {need}); train one with "
                                    "unidistill teach examples/3d/teacher.yaml")
    info = read_json(folder / "threed.json")
    _, param, process = read_scheduler(folder)
    net = load_weights(UNet2DModel, folder / "unet")
    conditioning = CameraConditioning(len(info["prompts"]), net.config.block_out_channels[0] * 4)
    conditioning.load_state_dict(load_file(str(folder / "conditioning.safetensors")))
    den = DiffusersDenoiser(net, param, process)
    return LearnedTeacher(den, conditioning, guidance, convention), info


SHIPPED = Path(__file__).parent / "weights" / "toy_teacher"  # trained by examples/3d/teacher.yaml
