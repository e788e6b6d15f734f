"""Pinhole cameras on a sphere around the origin, and the rays through their pixels.

World is z-up. Azimuth (degrees) is measured in the xy-plane from +x towards +y, so azimuth 0 ("front") puts the
camera on the +x axis looking at the origin; elevation (degrees) is above the xy-plane. Camera axes follow OpenGL:
the camera looks down its own -z axis, +y is up and +x right, so c2w's columns are (right, up, back, position).
The defaults of CameraRanges and the stratified azimuth are threestudio's dreamfusion ones.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor


@dataclass
class Cameras:
    """A batch of B pinhole cameras: poses, vertical fields of view and the angles they were placed at."""

    c2w: Tensor        # (B, 4, 4) camera-to-world
    fovy: Tensor       # (B,) vertical field of view, radians
    azimuth: Tensor    # (B,) degrees
    elevation: Tensor  # (B,) degrees
    distance: Tensor   # (B,)

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def _map(self, fn) -> Cameras:
        return Cameras(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def select(self, index) -> Cameras:
        """Rows by index tensor, slice or int (an int keeps the batch axis)."""
        if isinstance(index, int):
            index = slice(index, index + 1 or None)
        return self._map(lambda t: t[index])

    def to(self, device=None, dtype=None) -> Cameras:
        return self._map(lambda t: t.to(device=device, dtype=dtype))

    def embedding(self) -> Tensor:
        """threestudio's "extrinsics" camera condition: the flattened c2w, (B, 16)."""
        return self.c2w.reshape(len(self), 16)

    @staticmethod
    def cat(cams: list[Cameras]) -> Cameras:
        return Cameras(**{f.name: torch.cat([getattr(c, f.name) for c in cams]) for f in fields(Cameras)})


@dataclass(frozen=True)
class CameraRanges:
    """Uniform ranges the training cameras are drawn from (threestudio's dreamfusion defaults)."""

    azimuth: tuple[float, float] = (-180.0, 180.0)
    elevation: tuple[float, float] = (-10.0, 45.0)
    distance: tuple[float, float] = (1.5, 2.0)
    fovy: tuple[float, float] = (40.0, 70.0)  # degrees


def _unit(v: Tensor) -> Tensor:
    return v / torch.linalg.vector_norm(v, dim=-1, keepdim=True)


def look_at(eye: Tensor, target: Tensor | None = None, up: Sequence[float] = (0.0, 0.0, 1.0)) -> Tensor:
    """c2w (B, 4, 4) with columns right = f x up, up' = right x f, back = -f, eye, where f = unit(target - eye)."""
    eye = torch.as_tensor(eye)  # (B, 3)
    target = torch.zeros_like(eye) if target is None else torch.as_tensor(target).to(eye).expand_as(eye)
    upv = torch.as_tensor(up).to(eye)  # (3,)
    f = _unit(target - eye)  # (B, 3)
    right = torch.linalg.cross(f, upv.expand_as(f))
    norm = torch.linalg.vector_norm(right, dim=-1, keepdim=True)
    # eye on the up axis: take right = up x (the world axis least aligned with up), the limit of azimuth 0
    axis = torch.zeros_like(upv)
    axis[int(torch.argmin(upv.abs()))] = 1.0
    fallback = _unit(torch.linalg.cross(upv, axis)).expand_as(f)
    degenerate = norm < 100 * torch.finfo(f.dtype).eps * torch.linalg.vector_norm(upv)  # cos(90 deg) is not 0
    right = torch.where(degenerate, fallback, right / norm.clamp_min(1e-30))
    cam_up = torch.linalg.cross(right, f)
    c2w = torch.zeros(eye.shape[0], 4, 4, dtype=eye.dtype, device=eye.device)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, cam_up, -f, eye
    c2w[:, 3, 3] = 1.0
    return c2w


def from_angles(azimuth, elevation, distance, fovy_deg) -> Cameras:
    """Cameras at distance * (cos e cos a, cos e sin a, sin e) looking at the origin; all inputs (B,) in degrees."""
    azimuth = torch.as_tensor(azimuth)
    dtype = azimuth.dtype if azimuth.is_floating_point() else torch.get_default_dtype()
    az, el, dist, fov = (torch.atleast_1d(t) for t in torch.broadcast_tensors(
        *(torch.as_tensor(v, dtype=dtype, device=azimuth.device) for v in (azimuth, elevation, distance, fovy_deg))))
    a, e = torch.deg2rad(az), torch.deg2rad(el)
    eye = dist[:, None] * torch.stack([torch.cos(e) * torch.cos(a), torch.cos(e) * torch.sin(a), torch.sin(e)], -1)
    return Cameras(look_at(eye), torch.deg2rad(fov), az, el, dist)


def cameras_from_uniform(u: Tensor, ranges: CameraRanges, stratified: bool = False) -> Cameras:
    """u (B, 4) in [0, 1) -> lo + u (hi - lo) per column (azimuth, elevation, distance, fovy); stratified azimuth
    takes lo + (i + u_i) / B (hi - lo), one draw in each of B equal strata (threestudio's batch_uniform_azimuth)."""
    if u.ndim != 2 or u.shape[1] != 4:
        raise ValueError(f"cameras_from_uniform needs u of shape (B, 4), got {tuple(u.shape)}")
    cols = [ranges.azimuth, ranges.elevation, ranges.distance, ranges.fovy]
    lo = torch.tensor([c[0] for c in cols], dtype=u.dtype, device=u.device)
    hi = torch.tensor([c[1] for c in cols], dtype=u.dtype, device=u.device)
    v = u.clone()
    if stratified:
        v[:, 0] = (torch.arange(u.shape[0], dtype=u.dtype, device=u.device) + u[:, 0]) / u.shape[0]
    x = lo + v * (hi - lo)  # (B, 4)
    return from_angles(x[:, 0], x[:, 1], x[:, 2], x[:, 3])


def orbit(n: int, elevation: float = 15.0, distance: float = 1.75, fovy: float = 55.0, start: float = 0.0) -> Cameras:
    """A turntable: n cameras at azimuths start + 360 k / n, k = 0 .. n-1."""
    az = start + 360.0 * torch.arange(n, dtype=torch.get_default_dtype()) / n
    return from_angles(az, torch.full_like(az, elevation), torch.full_like(az, distance), torch.full_like(az, fovy))


def rays(cameras: Cameras, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Origins and unit directions (B, H, W, 3) through pixel centres: d_cam = ((c + 1/2 - W/2) / f,
    -(r + 1/2 - H/2) / f, -1) with f = H / (2 tan(fovy / 2)), so row 0 is the top of the image."""
    c2w = cameras.c2w
    b, dtype, device = len(cameras), c2w.dtype, c2w.device
    focal = 0.5 * height / torch.tan(0.5 * cameras.fovy.to(dtype))  # (B,)
    cols = torch.arange(width, dtype=dtype, device=device) + 0.5 - 0.5 * width  # (W,)
    rows = torch.arange(height, dtype=dtype, device=device) + 0.5 - 0.5 * height  # (H,)
    x = cols[None, None, :] / focal[:, None, None]  # (B, 1, W)
    y = -rows[None, :, None] / focal[:, None, None]  # (B, H, 1)
    d_cam = torch.stack(torch.broadcast_tensors(x, y, -torch.ones_like(x)), -1)  # (B, H, W, 3)
    d = _unit(torch.einsum("bij,bhwj->bhwi", c2w[:, :3, :3], d_cam))
    return c2w[:, None, None, :3, 3].expand(b, height, width, 3), d


def _pair(key: str, value) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"cameras.{key} must be a pair [lo, hi] of numbers, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise ValueError(f"cameras.{key} must be finite with lo <= hi, got [{lo}, {hi}]")
    return lo, hi


def check_ranges(ranges: CameraRanges, object_radius: float) -> None:
    """One-line ValueError unless every range is valid and a sphere of object_radius at the origin is entirely in
    view from every camera in range: distance_min sin(fovy_min / 2) >= object_radius (and distance_min > it)."""
    _pair("azimuth", ranges.azimuth)
    el, dist, fov = (_pair(k, getattr(ranges, k)) for k in ("elevation", "distance", "fovy"))
    if el[0] < -90 or el[1] > 90:
        raise ValueError(f"cameras.elevation must lie within [-90, 90] degrees, got [{el[0]}, {el[1]}]")
    if dist[0] <= 0:
        raise ValueError(f"cameras.distance must be > 0, got [{dist[0]}, {dist[1]}]")
    if fov[0] <= 0 or fov[1] >= 180:
        raise ValueError(f"cameras.fovy must lie within (0, 180) degrees, got [{fov[0]}, {fov[1]}]")
    reach = dist[0] * math.sin(math.radians(fov[0]) / 2)
    if dist[0] <= object_radius or reach < object_radius:
        raise ValueError(
            f"cameras.distance / cameras.fovy: an object of radius {object_radius} is cut off: distance_min "
            f"{dist[0]} * sin(fovy_min {fov[0]} / 2) = {reach:.4g} < {object_radius}; "
            f"raise cameras.distance[0] or cameras.fovy[0]")
