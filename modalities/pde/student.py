"""Phys-Instruct students: a copy of the teacher's network run as a fixed K-step generator (image's
StudentGenerator), exported as a folder a user can load without the run: the teacher layout
(unet/, scheduler/, pde.json) plus student.json with the noise levels of the K steps."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import Tensor

from unidistill.modalities.image.denoiser import DiffusersDenoiser, time_of_sigma
from unidistill.modalities.image.generator import StudentGenerator
from unidistill.modalities.image.teach import export_teacher

from .teacher import PDETeacher, load_teacher, write_info


def make_student(teacher: PDETeacher, sigmas: list[float]) -> StudentGenerator:
    """A trainable copy of the teacher's denoiser stepping through EDM noise levels `sigmas` (decreasing)."""
    import copy

    times = [time_of_sigma(teacher.denoiser.process, s) for s in sigmas]
    if any(b >= a for a, b in zip(times, times[1:])):
        raise ValueError(f"student_sigmas must decrease, got {sigmas}")
    return StudentGenerator(copy.deepcopy(teacher.denoiser).requires_grad_(True).train(), times)


def save_student(generator: StudentGenerator, teacher: PDETeacher, scheduler: dict, sigmas: list[float],
                 folder: str | Path) -> Path:
    folder = export_teacher(generator.denoiser, scheduler, Path(folder))
    write_info(folder, teacher.pde, teacher.info["size"], teacher.norm, teacher.info.get("residual_floor", {}))
    tmp = folder / "student.json.tmp"
    tmp.write_text(json.dumps({"sigmas": list(map(float, sigmas))}, indent=2))
    os.replace(tmp, folder / "student.json")
    return folder


def load_student(source: str | Path) -> tuple[StudentGenerator, PDETeacher]:
    """(generator, its PDE description) from a student folder or a run directory holding student/."""
    folder = Path(source)
    if (folder / "student").is_dir():
        folder = folder / "student"
    if not (folder / "student.json").is_file():
        raise FileNotFoundError(f"{source} is not a PDE student (no student.json); distil one with unidistill distill")
    spec = load_teacher(folder)
    sigmas = json.loads((folder / "student.json").read_text())["sigmas"]
    den: DiffusersDenoiser = spec.denoiser
    gen = StudentGenerator(den, [time_of_sigma(den.process, s) for s in sigmas]).eval()
    return gen, spec


@torch.no_grad()
def sample_student(generator: StudentGenerator, shape: tuple[int, ...], n: int, *, seed: int = 0,
                   batch: int = 256) -> Tensor:
    """n model-space samples (n, C, N, N) from fixed latents (seeded)."""
    g = torch.Generator().manual_seed(seed)
    device = next(generator.parameters()).device
    out = []
    for lo in range(0, n, batch):
        m = min(batch, n - lo)
        z = torch.randn(m, generator.n_steps, *shape, generator=g).to(device)
        out.append(generator(z).float().cpu())
    return torch.cat(out)
