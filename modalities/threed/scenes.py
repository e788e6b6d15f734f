"""Ground-truth scenes with a known answer: procedural primitives (signed distance functions) with flat colours,
turned into the renderer's density and colour fields. A prompt of the exact teacher is a weighted set of them.

Every scene fits inside the sphere of radius 0.5 around the origin (the default `object_radius`), so the default
cameras see all of it. "head" is not symmetric on purpose: a red nose on its front (+x, azimuth 0) and a dark-blue
cap on its back (-x), the Janus case's scene."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

Sdf = Callable[[Tensor], Tensor]  # points (..., 3) -> signed distance (...), negative inside


def sphere(centre=(0.0, 0.0, 0.0), radius: float = 0.4) -> Sdf:
    c = torch.tensor(centre)
    return lambda p: (p - c.to(p)).norm(dim=-1) - radius


def box(centre=(0.0, 0.0, 0.0), half=(0.28, 0.28, 0.28)) -> Sdf:
    c, h = torch.tensor(centre), torch.tensor(half)

    def sdf(p):
        q = (p - c.to(p)).abs() - h.to(p)
        return q.clamp_min(0).norm(dim=-1) + q.max(dim=-1).values.clamp_max(0)

    return sdf


def torus(major: float = 0.3, minor: float = 0.12) -> Sdf:
    """A ring around the z axis."""
    return lambda p: torch.stack([p[..., :2].norm(dim=-1) - major, p[..., 2]], -1).norm(dim=-1) - minor


def cylinder(radius: float = 0.25, half_height: float = 0.35) -> Sdf:
    """Upright (along z), capped."""

    def sdf(p):
        d = torch.stack([p[..., :2].norm(dim=-1) - radius, p[..., 2].abs() - half_height], -1)
        return d.clamp_min(0).norm(dim=-1) + d.max(dim=-1).values.clamp_max(0)

    return sdf


@dataclass(frozen=True)
class Scene:
    """Parts (signed distance, RGB in [0, 1]); the colour of a point is its nearest part's."""

    name: str
    parts: tuple[tuple[Sdf, tuple[float, float, float]], ...]

    def sdf(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """(distance to the scene (...,), index of the nearest part (...,))."""
        d = torch.stack([f(points) for f, _ in self.parts], -1)
        return d.min(dim=-1)

    def field(self, density: float = 200.0, width: float = 0.01):
        """The renderer's field: sigma = density * sigmoid(-sdf / width) (a surface `width` thick), flat colours."""
        colours = torch.tensor([c for _, c in self.parts])

        def f(points: Tensor) -> tuple[Tensor, Tensor]:
            d, k = self.sdf(points)
            return density * torch.sigmoid(-d / width), colours.to(points)[k]

        return f


SCENES: dict[str, Scene] = {s.name: s for s in (
    Scene("red_ball", ((sphere(radius=0.4), (0.85, 0.15, 0.1)),)),
    Scene("blue_cube", ((box(), (0.15, 0.3, 0.85)),)),
    Scene("green_torus", ((torus(), (0.2, 0.75, 0.25)),)),
    Scene("yellow_cylinder", ((cylinder(), (0.9, 0.8, 0.2)),)),
    Scene("head", ((sphere(radius=0.32), (0.9, 0.75, 0.6)),
                   (sphere((0.33, 0.0, 0.02), 0.1), (0.9, 0.1, 0.1)),
                   (sphere((-0.2, 0.0, 0.12), 0.24), (0.1, 0.1, 0.45)))),
)}


def scene(name: str) -> Scene:
    if name not in SCENES:
        raise ValueError(f"unknown scene {name!r}; choose one of: {', '.join(SCENES)}")
    return SCENES[name]


def stacked_field(fields: list, index: Tensor):
    """One field over a batch whose row b is scene index[b] of `fields` (each evaluated on its own rows)."""

    def f(points: Tensor) -> tuple[Tensor, Tensor]:
        sigma = points.new_zeros(points.shape[:-1])
        rgb = points.new_zeros(*points.shape[:-1], 3)
        for k in index.unique().tolist():
            rows = (index == k).nonzero().squeeze(1).to(points.device)
            s, c = fields[k](points[rows])
            sigma[rows], rgb[rows] = s, c
        return sigma, rgb

    return f


def prompt_weights(prompts: dict[str, dict[str, float]], where: str = "teacher.prompts") -> tuple[list[str], Tensor]:
    """(the scene names, sorted; weights (prompts, scenes), each row summing to 1) of {prompt: {scene: weight}};
    no prompt, an unknown scene or a weight <= 0 is a one-line ValueError naming the config key `where`."""
    if not prompts:
        raise ValueError(f"config key {where}: give at least one prompt {{name: {{scene: weight}}}}")
    names = sorted({s for p in prompts.values() for s in p})
    for name in names:
        if name not in SCENES:
            raise ValueError(f"config key {where}: unknown scene {name!r}; choose one of: {', '.join(SCENES)}")
    weights = torch.zeros(len(prompts), len(names))
    for i, (p, mix) in enumerate(prompts.items()):
        if not mix or any(not w > 0 for w in mix.values()):
            raise ValueError(f"config key {where}.{p}: needs scenes with weights > 0, got {mix!r}")
        for name, w in mix.items():
            weights[i, names.index(name)] = float(w)
    return names, weights / weights.sum(1, keepdim=True)

