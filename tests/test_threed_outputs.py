"""3-D outputs: meshes of an analytic sphere land where the sphere is, exports load back, the turntable pins the
camera convention (+x faces frame 0, +y the quarter turn, +z the top rows), and the files are what they claim."""
import importlib.util
import sys

import numpy as np
import pytest
import torch

from unidistill.modalities.threed.outputs import (
    DENSITY_THRESHOLD,
    export_mesh,
    extract_mesh,
    save_gif,
    save_strip,
    save_views,
    turntable,
)

pytestmark = pytest.mark.usefixtures("one_thread")

CENTRE, RADIUS, RES = torch.tensor([0.2, -0.1, 0.15]), 0.5, 48
STEP = 2.0 / (RES - 1)  # lattice spacing over [-1, 1]
HAS_MARCHING_CUBES = any(importlib.util.find_spec(m) is not None for m in ("skimage", "mcubes"))


def sphere_density(p):
    return 50.0 * ((p - CENTRE).norm(dim=-1) < RADIUS).float()


def half_colour(p):
    """Red where x > the centre's x, green elsewhere."""
    right = (p[:, 0] > CENTRE[0]).float()
    return torch.stack([right, 1 - right, torch.zeros_like(right)], -1)


@pytest.fixture(params=["skimage", "mcubes"])
def backend(request, monkeypatch):
    """Run with one marching-cubes library: the other is hidden (skimage is preferred when both are present)."""
    pytest.importorskip("skimage.measure" if request.param == "skimage" else "mcubes")
    if request.param == "mcubes":
        monkeypatch.setitem(sys.modules, "skimage.measure", None)
    return request.param


def test_sphere_mesh_is_in_world_coordinates_outward_and_coloured(backend):
    mesh = extract_mesh(sphere_density, half_colour, resolution=RES)
    assert mesh.vertices.dtype == np.float32 and mesh.faces.shape[1] == 3 and mesh.colours.dtype == np.uint8
    v = torch.from_numpy(mesh.vertices)
    r = (v - CENTRE).norm(dim=-1)
    assert (r - RADIUS).abs().max() < STEP  # every vertex within one voxel of the sphere
    assert (v.mean(0) - CENTRE).abs().max() < 0.2 * STEP  # no shift (a half-voxel offset or swapped axes fail here)
    a, b, c = (v[mesh.faces[:, i]].double() for i in range(3))
    volume = float(torch.einsum("ij,ij->i", a, torch.linalg.cross(b, c)).sum()) / 6  # > 0: faces wind outward
    assert abs(volume / (4 / 3 * np.pi * RADIUS ** 3) - 1) < 0.05
    right, left = v[:, 0] > CENTRE[0] + STEP, v[:, 0] < CENTRE[0] - STEP
    assert (mesh.colours[right.numpy()] == [255, 0, 0]).all() and (mesh.colours[left.numpy()] == [0, 255, 0]).all()


def test_surface_reaching_the_box_closes_on_its_faces(backend):
    mesh = extract_mesh(lambda p: 50.0 * (p[:, 0] > 0.3).float(), resolution=16, bound=2.0)
    v = mesh.vertices
    assert np.abs(v).max() == 2.0 and v[:, 0].min() > 0.3 - 4 / 15  # clipped to the box, the cut within a voxel
    edges = np.sort(mesh.faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    assert (np.unique(edges, axis=0, return_counts=True)[1] == 2).all()  # closed: every edge in two faces


def test_threshold_and_empty_field():
    low = lambda p: 0.4 * sphere_density(p)  # max 20 < DENSITY_THRESHOLD
    with pytest.raises(ValueError) as e:
        extract_mesh(low, resolution=16)
    msg = str(e.value)
    assert "\n" not in msg and f"threshold {DENSITY_THRESHOLD:g}" in msg and "max density 20" in msg
    with pytest.raises(ValueError, match="max density 0 .*threshold 5"):
        extract_mesh(lambda p: torch.zeros(len(p)), resolution=8, threshold=5)
    if HAS_MARCHING_CUBES:
        assert len(extract_mesh(low, resolution=16, threshold=10).faces) > 0


def test_export_obj_glb_load_back(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    if not HAS_MARCHING_CUBES:
        pytest.skip("needs scikit-image or PyMCubes")
    mesh = extract_mesh(sphere_density, half_colour, resolution=32)
    for suffix in (".obj", ".glb", ".ply"):
        path = export_mesh(mesh, tmp_path / f"sphere{suffix}")
        back = trimesh.load(path, force="mesh", process=False)
        assert len(back.vertices) == len(mesh.vertices) and len(back.faces) == len(mesh.faces), suffix
        assert np.allclose(back.vertices, mesh.vertices, atol=1e-5), suffix
        assert np.array_equal(np.asarray(back.visual.vertex_colors)[:, :3], mesh.colours), suffix
        assert trimesh.load(path, force="mesh").is_watertight, suffix
    with pytest.raises(ValueError) as e:
        export_mesh(mesh, tmp_path / "sphere.stl")
    assert "\n" not in str(e.value) and ".obj, .glb, .ply" in str(e.value)


def sided_field(points):
    """A ball of radius 0.5: red on +x, blue on -x, green added on +z."""
    sigma = 50.0 * (points.norm(dim=-1) < 0.5).float()
    x, z = (points[..., 0] > 0).float(), (points[..., 2] > 0).float()
    return sigma, torch.stack([x, z, 1 - x], -1)


@pytest.fixture(scope="module")
def views():
    return turntable(sided_field, n_frames=8, height=32, width=32, n_samples=32, chunk=256)


def test_turntable_pins_the_camera_convention(views):
    rgb, depth, opacity = views["rgb"].astype(float), views["depth"], views["opacity"]
    assert rgb.shape == (8, 32, 32, 3) and depth.shape == opacity.shape == (8, 32, 32)
    assert all(a.dtype == np.uint8 for a in views.values())
    solid = opacity > 200
    assert solid[:, 16, 16].all() and not opacity[:, 0, 0].any() and not depth[:, 0, 0].any()
    assert (rgb[0, 0, 0] == 255).all()  # white background
    red, green, blue = (rgb[..., i] for i in range(3))
    front, back = solid[0], solid[4]  # azimuth 0 (camera on +x) and 180 (camera on -x)
    assert red[0][front].mean() > 200 and blue[0][front].mean() < 55
    assert blue[4][back].mean() > 200 and red[4][back].mean() < 55
    side = solid[2]  # azimuth 90, camera on +y: image right is -x (blue), image left +x (red)
    assert red[2][:, :16][side[:, :16]].mean() > 200 and blue[2][:, 16:][side[:, 16:]].mean() > 200
    assert green[:, :12][solid[:, :12]].mean() > 200 and green[:, 20:][solid[:, 20:]].mean() < 55  # row 0 is top
    # near is bright: the ball's centre pixel is nearer than pixels by its rim
    rim = solid[0] & ~np.pad(solid[0][2:, 2:] & solid[0][:-2, :-2] & solid[0][2:, :-2] & solid[0][:-2, 2:], 1)
    assert int(depth[0, 16, 16]) > depth[0][rim].mean() + 20


def test_gif_strip_and_views_files(views, tmp_path, monkeypatch):
    iio = pytest.importorskip("imageio.v3")
    paths = save_views(views, tmp_path / "out", "step100")
    assert [p.name for p in paths] == ["step100_turntable.gif", "step100_strip.png", "step100_depth.png",
                                       "step100_opacity.png"] and all(p.is_file() for p in paths)
    assert not list((tmp_path / "out").glob("*.tmp*"))
    gif = iio.imread(paths[0], index=None)
    assert gif.shape[:3] == (8, 32, 32)
    assert np.abs(gif[..., :3].astype(int) - views["rgb"]).mean(axis=(1, 2, 3)).max() < 12  # frame i is frame i
    assert iio.immeta(paths[0], index=0).get("loop") == 0
    strip = iio.imread(paths[1])
    assert strip.shape == (32, 8 * 32, 3) and np.array_equal(strip[:, 3 * 32:4 * 32], views["rgb"][3])
    depth = iio.imread(paths[2])
    assert depth.shape == (32, 256) and np.array_equal(depth[:, 5 * 32:6 * 32], views["depth"][5])
    grid = iio.imread(save_strip(views["rgb"], tmp_path / "grid.png", columns=3))
    assert grid.shape == (3 * 32, 3 * 32, 3) and np.array_equal(grid[32:64, 64:96], views["rgb"][5])
    assert not grid[64:, 64:].any()  # the ninth cell is empty
    monkeypatch.setitem(sys.modules, "imageio.v3", None)  # without imageio: matplotlib writes the strip
    fallback = iio.imread(save_strip(views["opacity"], tmp_path / "mpl.png"))
    assert np.array_equal(fallback[..., 0], iio.imread(paths[3]))


def test_gif_frame_count_of_distinct_frames(tmp_path):
    iio = pytest.importorskip("imageio.v3")
    frames = np.zeros((5, 8, 8, 3), np.uint8)
    frames[np.arange(5), np.arange(5)] = 255  # row i lit in frame i
    back = iio.imread(save_gif(frames, tmp_path / "a.gif", fps=10), index=None)
    assert back.shape[0] == 5 and all(back[i, i].min() == 255 for i in range(5))
