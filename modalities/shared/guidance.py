"""Classifier-free guidance in one convention, with the other available by name.

The library's convention is uncond-first, `D_u + w (D_c - D_u)` (Ho & Salimans 2022; diffusers, ProlificDreamer's
VSD): w = 1 is the conditional model, w = 0 the unconditional one. threestudio's SDS and Dive3D write it text-first,
`D_c + s (D_c - D_u)`, which is the same map at w = s + 1 (so their default s = 100 is w = 101). Guidance is affine
in the prediction at a fixed x_t, so it reads the same on denoisers, eps or v."""
from __future__ import annotations

from torch import Tensor

CONVENTIONS = ("uncond_first", "text_first")


def uncond_first_scale(scale: float, convention: str = "uncond_first") -> float:
    """The uncond-first w equal to `scale` written in `convention` (text-first s -> w = s + 1)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown guidance convention {convention!r}; choose one of: {', '.join(CONVENTIONS)}")
    return float(scale) + 1.0 if convention == "text_first" else float(scale)


def guide(cond: Tensor, uncond: Tensor, scale: float, convention: str = "uncond_first") -> Tensor:
    """The guided prediction from the conditional and unconditional ones."""
    if convention == "text_first":
        return cond + scale * (cond - uncond)
    w = uncond_first_scale(scale, convention)
    return uncond + w * (cond - uncond)
