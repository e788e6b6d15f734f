"""A PDE teacher: an EDM denoiser over normalised joint fields plus the PDE it was trained on.
Model space is x_model = (x - mean) / std per channel; residuals are evaluated in physical units.
Folders (what `unidistill teach` exports, or a user's own of the same form) are read and written by io.py."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from unidistill.modalities.shared.denoiser import DiffusersDenoiser

from .problems import relative_residual


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


def check_fields(teacher: PDETeacher, x: Tensor, what: str) -> None:
    """One-line error when x (B, C, N, N) does not match the teacher's grid."""
    if x.ndim != 4 or tuple(x.shape[1:]) != teacher.shape:
        raise ValueError(f"{what}: expected (B, {', '.join(map(str, teacher.shape))}) fields for this "
                         f"{teacher.pde.name} teacher, got {tuple(x.shape)}")
