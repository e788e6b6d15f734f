"""What every 3D network is conditioned on: a prompt, a camera and the render size, and for the particle
generator which particle is rendered. threestudio's view-dependent prompting bins the azimuth into front, left,
back and right (90 degrees each, front centred on azimuth 0)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .cameras import Cameras, from_angles

BINS = ("front", "left", "back", "right")  # azimuth centres 0, 90, 180, -90 degrees


@dataclass
class View:
    """The condition of a render (B rows): prompt index (B,), cameras, square render size, particle index (B,)."""

    prompt: Tensor
    cameras: Cameras
    size: int
    particle: Tensor | None = None

    def __len__(self) -> int:
        return len(self.prompt)

    def select(self, rows: Tensor) -> View:
        return View(self.prompt[rows], self.cameras.select(rows), self.size,
                    None if self.particle is None else self.particle[rows])


def view_bin(azimuth: Tensor) -> Tensor:
    """(B,) index into BINS of each azimuth in degrees."""
    return torch.remainder(torch.round(azimuth / 90.0), 4).long()


def seen_from(cameras: Cameras, bin_index: int) -> Cameras:
    """The cameras turned so that each sits in `bin_index`'s sector at the same offset from its centre as it had
    from its own bin's centre (elevation, distance and field of view kept): what a view-independent teacher
    shows from a camera is the scene seen from the sector its prompt describes."""
    offset = cameras.azimuth - 90.0 * torch.round(cameras.azimuth / 90.0)
    return from_angles(90.0 * bin_index + offset, cameras.elevation, cameras.distance, torch.rad2deg(cameras.fovy))
