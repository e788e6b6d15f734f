"""Files a person looks at from a 3-D run: turntable GIFs, frame strips, depth and opacity sheets, coloured meshes."""
from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .cameras import orbit
from .fields import lattice
from .render import Field, render

# Surface level of extract_mesh, in density units (1/world length), as in the torch-ngp and stable-dreamfusion
# exporters: a ray crossing 0.1 world units at sigma 25 is 92% opaque, so the mesh is what the renders show as solid.
DENSITY_THRESHOLD = 25.0
MESH_SUFFIXES = (".obj", ".glb", ".ply")


@dataclass
class Mesh:
    """A triangle mesh in world coordinates; faces wind counter-clockwise seen from outside."""

    vertices: np.ndarray  # (V, 3) float32
    faces: np.ndarray  # (F, 3) int64
    colours: np.ndarray | None = None  # (V, 3) uint8


def _atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call write(tmp) on a temporary file beside path, then move it onto path (a kill never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp" + path.suffix)
    try:
        write(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path


def _to_uint8(x: Tensor) -> np.ndarray:
    return (x.float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def depth_grey(depth: Tensor, opacity: Tensor) -> Tensor:
    """Depth as a grey in [0, 1] for viewing: 0 where nothing was hit, else opacity * (0.2 + 0.8 * nearness).

    nearness is 1 at the nearest and 0 at the farthest depth among pixels more than half opaque, over all frames
    at once (so a turntable does not flicker); distance is the renderer's depth / opacity, the mean hit distance.
    """
    distance = depth / opacity.clamp_min(1e-6)
    solid = opacity > 0.5
    if not bool(solid.any()):
        return torch.zeros_like(depth)
    near, far = distance[solid].min(), distance[solid].max()
    nearness = ((far - distance) / (far - near).clamp_min(1e-6)).clamp(0, 1)
    return opacity.clamp(0, 1) * (0.2 + 0.8 * nearness)


@torch.no_grad()
def turntable(field: Field, n_frames: int = 24, height: int = 64, width: int = 64, n_samples: int = 64,
              background=(1.0, 1.0, 1.0), elevation: float = 15.0, distance: float = 1.75, fovy: float = 55.0,
              bound: float = 1.0, chunk: int | None = 1024) -> dict[str, np.ndarray]:
    """One scene from orbit(n_frames) (frame 0 at azimuth 0, camera on +x): uint8 "rgb" (F,H,W,3), "depth", "opacity".

    field is called with B = n_frames on chunk rays per frame at a time (None: all). "depth" is depth_grey.
    """
    cams = orbit(n_frames, elevation=elevation, distance=distance, fovy=fovy)
    bg = torch.as_tensor(background, dtype=torch.float32)
    out = render(field, cams, height, width, n_samples=n_samples, background=bg, bound=bound, chunk=chunk)
    return {"rgb": _to_uint8(out.rgb.permute(0, 2, 3, 1)),
            "depth": _to_uint8(depth_grey(out.depth, out.opacity)[:, 0]),
            "opacity": _to_uint8(out.opacity[:, 0])}


def save_gif(frames: np.ndarray, path: str | Path, fps: float = 12) -> Path:
    """Write uint8 frames (F,H,W,3) as a GIF that loops forever, through imageio."""
    import imageio.v3 as iio

    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    return _atomic(path, lambda tmp: iio.imwrite(tmp, frames, extension=".gif", duration=round(1000 / fps), loop=0))


def tile(frames: np.ndarray, columns: int | None = None) -> np.ndarray:
    """Frames (F,H,W) or (F,H,W,3) laid out row by row in a grid (default: up to 8 columns); empty cells are 0."""
    frames = np.asarray(frames)
    n, h, w = frames.shape[:3]
    columns = min(n, 8) if columns is None else max(1, min(n, int(columns)))
    rows = math.ceil(n / columns)
    grid = np.zeros((rows * h, columns * w, *frames.shape[3:]), dtype=frames.dtype)
    for i, frame in enumerate(frames):
        r, c = divmod(i, columns)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = frame
    return grid


def save_strip(frames: np.ndarray, path: str | Path, columns: int | None = None) -> Path:
    """Write uint8 frames (F,H,W) or (F,H,W,3) as one PNG grid (see tile), through imageio, else matplotlib."""
    grid = tile(np.asarray(frames, dtype=np.uint8), columns)
    try:
        import imageio.v3 as iio
    except ImportError:
        from unidistill.modalities.shared.plots import pyplot

        return _atomic(path, lambda tmp: pyplot().imsave(tmp, grid, cmap="gray", vmin=0, vmax=255))
    return _atomic(path, lambda tmp: iio.imwrite(tmp, grid, extension=".png"))


def save_views(views: dict[str, np.ndarray], folder: str | Path, stem: str) -> list[Path]:
    """Write a turntable's views: <stem>_turntable.gif, <stem>_strip.png, <stem>_depth.png, <stem>_opacity.png."""
    folder = Path(folder)
    return [save_gif(views["rgb"], folder / f"{stem}_turntable.gif"),
            save_strip(views["rgb"], folder / f"{stem}_strip.png"),
            save_strip(views["depth"], folder / f"{stem}_depth.png"),
            save_strip(views["opacity"], folder / f"{stem}_opacity.png")]


@torch.no_grad()
def _evaluate(fn: Callable[[Tensor], Tensor], points: Tensor, chunk: int, device) -> Tensor:
    return torch.cat([fn(points[i:i + chunk].to(device)).float().cpu() for i in range(0, len(points), chunk)])


def _marching_cubes(volume: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertices in index coordinates of volume's axes and faces wound outward (towards lower values)."""
    try:
        from skimage.measure import marching_cubes
    except ImportError:
        try:
            import mcubes
        except ImportError:
            raise ImportError("extract_mesh needs scikit-image or PyMCubes: pip install PyMCubes") from None
        vertices, faces = mcubes.marching_cubes(volume, level)
        return vertices, faces.astype(np.int64)
    vertices, faces, _, _ = marching_cubes(volume, level, gradient_direction="ascent")
    return vertices, faces.astype(np.int64)


def extract_mesh(density: Callable[[Tensor], Tensor], colour: Callable[[Tensor], Tensor] | None = None,
                 resolution: int = 64, bound: float = 1.0, threshold: float | None = None, chunk: int = 65536,
                 device: str | torch.device | None = None) -> Mesh:
    """The level-threshold surface (default DENSITY_THRESHOLD) of density (N,3)->(N,) by marching cubes.

    density is sampled on fields.lattice(resolution, bound) (node [i, j, k] at x_i, y_j, z_k), padded below the
    threshold so surfaces that reach the box close on its faces; colour (N,3)->(N,3) in [0, 1], if given, is
    evaluated at the vertices; device is where the points are sent (default: the CPU).
    """
    level = DENSITY_THRESHOLD if threshold is None else float(threshold)
    sigma = _evaluate(density, lattice(resolution, bound), chunk, device).reshape((resolution,) * 3).numpy()
    top = float(np.nan_to_num(sigma, nan=-np.inf).max())
    if not top > level:
        hint = (f"pass a lower threshold (e.g. threshold={top / 2:.3g}) or train the field longer" if top > 0
                else "the density is nowhere positive: check the field")
        raise ValueError(f"extract_mesh: no surface: the field's max density {top:.4g} is not above threshold "
                         f"{level:g}; {hint}")
    volume = np.pad(np.nan_to_num(sigma, nan=0.0), 1, constant_values=min(0.0, level) - abs(level) - 1.0)
    vertices, faces = _marching_cubes(volume, level)
    step = 2 * bound / (resolution - 1)
    vertices = np.clip((vertices - 1) * step - bound, -bound, bound).astype(np.float32)  # -1: the padding layer
    colours = None
    if colour is not None:
        colours = _to_uint8(_evaluate(colour, torch.from_numpy(vertices), chunk, device))
    return Mesh(vertices, faces, colours)


def export_mesh(mesh: Mesh, path: str | Path) -> Path:
    """Write mesh through trimesh as .obj, .glb or .ply by path's suffix, with its vertex colours."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise ValueError(f"export_mesh: unknown mesh suffix {path.suffix!r} in {path}; use one of "
                         f"{', '.join(MESH_SUFFIXES)}")
    import trimesh

    colours = None
    if mesh.colours is not None:
        colours = np.concatenate([mesh.colours, np.full((len(mesh.colours), 1), 255, np.uint8)], 1)
    data = trimesh.Trimesh(mesh.vertices, mesh.faces, vertex_colors=colours, process=False).export(
        file_type=suffix[1:])
    mode = "w" if isinstance(data, str) else "wb"

    def write(tmp: Path):
        with open(tmp, mode) as f:
            f.write(data)

    return _atomic(path, write)
