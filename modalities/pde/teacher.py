"""A PDE teacher: an EDM denoiser over normalised joint fields plus the PDE it was trained on.

Folder layout (what `unidistill teach` exports; point `teacher:` at your own folder of the same form):
  unet/ + scheduler/   a diffusers UNet2DModel and its scheduler config (EDM), C = len(pde.channels) channels
  pde.json             {"pde", "options", "size", "channels", "mean", "std", "residual_floor"}
Model space is x_model = (x - mean) / std per channel; residuals are evaluated in physical units."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from unidistill.modalities.image.denoiser import DiffusersDenoiser, Parameterisation

from .data import build_pde
from .problems import relative_residual

WEIGHTS = Path(__file__).parent / "weights"
SHIPPED = {"darcy": WEIGHTS / "darcy_edm", "poisson": WEIGHTS / "poisson_edm"}


@dataclass
class Normaliser:
    """Per-channel affine map between physical fields and model space."""

    mean: Tensor  # (C,)
    std: Tensor  # (C,)

    def to_model(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x).view(1, -1, 1, 1)) / self.std.to(x).view(1, -1, 1, 1)

    def to_physical(self, x: Tensor) -> Tensor:
        return x * self.std.to(x).view(1, -1, 1, 1) + self.mean.to(x).view(1, -1, 1, 1)


@dataclass
class PDETeacher:
    denoiser: DiffusersDenoiser
    pde: object
    norm: Normaliser
    info: dict  # the content of pde.json

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.pde.channels), self.info["size"], self.info["size"])

    def residual(self, x_model: Tensor) -> Tensor:
        """Relative PDE residual (B,) of model-space samples."""
        return relative_residual(self.pde, self.norm.to_physical(x_model))


def write_info(folder: Path, pde, size: int, norm: Normaliser, floor: dict) -> None:
    from .problems import options

    info = {"pde": pde.name, "options": options(pde), "size": size, "channels": list(pde.channels),
            "mean": norm.mean.tolist(), "std": norm.std.tolist(), "residual_floor": floor}
    tmp = folder / "pde.json.tmp"
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, folder / "pde.json")


def load_teacher(source: str | Path) -> PDETeacher:
    """A shipped teacher by PDE name, or a local folder laid out as above."""
    from diffusers import UNet2DModel

    folder = SHIPPED.get(str(source), Path(source))
    if not folder.is_dir():
        raise FileNotFoundError(f"teacher {str(source)!r} is neither a shipped PDE teacher ({', '.join(SHIPPED)}) "
                                "nor a folder")
    for need in ("pde.json", "unet", "scheduler/scheduler_config.json"):
        if not (folder / need).exists():
            raise FileNotFoundError(f"teacher folder {folder} has no {need}")
    info = json.loads((folder / "pde.json").read_text())
    pde = build_pde(info["pde"], **info.get("options", {}))
    net = UNet2DModel.from_pretrained(folder / "unet")
    c, size = len(pde.channels), info["size"]
    if net.config.in_channels != c or net.config.out_channels != c or net.config.sample_size != size:
        raise ValueError(f"teacher {folder}: the network is {net.config.in_channels} channels at "
                         f"{net.config.sample_size}x{net.config.sample_size}, but pde.json says {pde.name} "
                         f"({c} channels) at {size}x{size}")
    param, process = Parameterisation.from_scheduler(json.loads((folder / "scheduler/scheduler_config.json")
                                                                .read_text()))
    den = DiffusersDenoiser(net.eval(), param, process).requires_grad_(False)
    norm = Normaliser(torch.tensor(info["mean"]), torch.tensor(info["std"]))
    return PDETeacher(den, pde, norm, info)


def check_fields(teacher: PDETeacher, x: Tensor, what: str) -> None:
    """One-line error when x (B, C, N, N) does not match the teacher's grid."""
    if x.ndim != 4 or tuple(x.shape[1:]) != teacher.shape:
        raise ValueError(f"{what}: expected (B, {', '.join(map(str, teacher.shape))}) fields for this "
                         f"{teacher.pde.name} teacher, got {tuple(x.shape)}")
