"""3D backend pieces: volume rendering against closed forms and finite differences, trilinear voxel grids, cameras
on a sphere and the render-size helpers. Comments name the sign mutation each test catches (each was tried)."""
import math

import pytest
import torch
from torch.func import functional_call

from unidistill.modalities.threed.cameras import (
    CameraRanges,
    Cameras,
    cameras_from_uniform,
    check_ranges,
    from_angles,
    look_at,
    orbit,
    rays,
)
from unidistill.modalities.threed.fields import VoxelGrids, lattice, sample_grid
from unidistill.modalities.threed.render import render, render_step_memory, resolution_at

pytestmark = pytest.mark.usefixtures("one_thread")
F64 = torch.float64


def cams(az, el, dist, fov, dtype=F64) -> Cameras:
    t = lambda v: torch.tensor(v, dtype=dtype)
    return from_angles(t(az), t(el), t(dist), t(fov))


def constant(sigma0: float, colour):
    """sigma0 and one colour everywhere (the renderer clips rays to the box)."""
    c = torch.tensor(colour, dtype=F64)
    return lambda p: (torch.full(p.shape[:2], sigma0, dtype=p.dtype), c.to(p).expand(*p.shape[:2], 3))


# --- rendering ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seeded", [False, True])
def test_render_gradcheck_through_voxel_grids(seeded):
    torch.manual_seed(0)
    grids = VoxelGrids(1, resolution=4, blob=2.0, init_std=0.5).double()
    colour = torch.randn_like(grids.colour)
    index, cameras = torch.zeros(2, dtype=torch.long), cams([20.0, -70.0], [15.0, 40.0], [2.0, 1.8], [50.0, 60.0])
    bg = torch.tensor([0.2, 0.5, 0.9], dtype=F64)

    def f(density, colour):
        field = lambda p: functional_call(grids, {"density": density, "colour": colour}, (index, p))
        gen = torch.Generator().manual_seed(3) if seeded else None
        out = render(field, cameras, 3, 3, n_samples=8, background=bg, generator=gen)
        return out.rgb, out.opacity, out.depth

    d, c = grids.density.detach().clone().requires_grad_(), colour.requires_grad_()
    assert torch.autograd.gradcheck(f, (d, c), eps=1e-6, atol=1e-6)
    assert {n.split(".")[0] for n, _ in grids.named_parameters()} == {"density", "colour"}


@pytest.mark.parametrize("seeded", [False, True])
def test_constant_density_closed_form(seeded):
    # catches T = exp(+cumsum), an inclusive cumsum, and (1 + opacity) * background: opacity / rgb change
    sigma0, c, bg, bound, n = 0.7, [0.9, 0.3, 0.1], torch.tensor([0.1, 0.2, 0.6], dtype=F64), 1.5, 16
    gen = torch.Generator().manual_seed(0) if seeded else None
    out = render(constant(sigma0, c), cams([0.0], [0.0], [3.0], [30.0]), 1, 1, n, bg, bound=bound, generator=gen)
    opacity = 1 - math.exp(-sigma0 * 2 * bound)  # the ray runs along -x through the centre: t from 1.5 to 4.5
    assert out.opacity.item() == pytest.approx(opacity, rel=1e-12)
    assert torch.allclose(out.rgb[0, :, 0, 0], torch.tensor(c, dtype=F64) * opacity + (1 - opacity) * bg)
    if not seeded:  # midpoints t_i = near + (i + 1/2) delta, w_i = exp(-sigma0 delta i) (1 - exp(-sigma0 delta))
        near, delta = 3.0 - bound, 2 * bound / n
        depth = sum(math.exp(-sigma0 * delta * i) * (1 - math.exp(-sigma0 * delta)) * (near + (i + 0.5) * delta)
                    for i in range(n))
        assert out.depth.item() == pytest.approx(depth, rel=1e-12)


def test_empty_field_shows_the_background():
    bg = torch.tensor([[0.1, 0.2, 0.3], [0.7, 0.0, 1.0]], dtype=F64)  # one per camera
    out = render(constant(0.0, [1.0, 1.0, 1.0]), cams([0.0, 90.0], [0.0, 30.0], [2.0, 2.0], [50.0, 50.0]), 4, 5, 8, bg)
    assert torch.equal(out.rgb, bg[:, :, None, None].expand(2, 3, 4, 5))
    assert torch.equal(out.opacity, torch.zeros(2, 1, 4, 5, dtype=F64)) and not out.depth.any()


def test_front_surface_occludes_the_back():
    # catches a reversed compositing order (back to front) and a camera that looks away from the origin (-f)
    def field(p):
        red, blue = torch.tensor([1.0, 0, 0], dtype=p.dtype), torch.tensor([0, 0, 1.0], dtype=p.dtype)
        return torch.full(p.shape[:2], 50.0, dtype=p.dtype), torch.where(p[..., :1] > 0, red, blue)

    out = render(field, cams([0.0, 180.0], [0.0, 0.0], [3.0, 3.0], [20.0, 20.0]), 3, 3, 32)
    assert torch.allclose(out.rgb[0, :, 1, 1], torch.tensor([1.0, 0, 0], dtype=F64), atol=1e-6)  # front: +x, red
    assert torch.allclose(out.rgb[1, :, 1, 1], torch.tensor([0, 0, 1.0], dtype=F64), atol=1e-6)  # back: -x, blue
    assert out.depth[0, 0, 1, 1].item() == pytest.approx(2.0, abs=0.1)  # the front face at x = 1


def test_rays_that_miss_the_box_keep_the_background():
    bg = torch.tensor([0.3, 0.6, 0.9], dtype=F64)
    cameras = cams([25.0], [10.0], [3.0], [120.0])
    out = render(constant(20.0, [0.0, 0.0, 0.0]), cameras, 9, 9, 16, bg)
    o, d = rays(cameras, 9, 9)
    t = torch.linspace(0, 10, 20001, dtype=F64)
    inside = ((o[..., None, :] + t[:, None] * d[..., None, :]).abs() <= 1).all(-1).any(-1)[0]  # (9, 9)
    assert inside.any() and (~inside).any() and not inside[0, 0]
    assert (out.opacity[0, 0][inside] > 0).all() and (out.opacity[0, 0][~inside] < 1e-2).all()
    assert out.opacity[0, 0, 0, 0] == 0 and torch.equal(out.rgb[0, :, 0, 0], bg)


def test_chunks_and_dtypes_give_the_same_render():
    torch.manual_seed(1)
    grids = VoxelGrids(2, resolution=5, blob=3.0, init_std=1.0).double()
    cameras, index = cams([10.0, 200.0], [5.0, -5.0], [2.0, 1.7], [45.0, 60.0]), torch.tensor([1, 0])
    whole = render(grids.field(index), cameras, 3, 5, 8, generator=torch.Generator().manual_seed(4))
    parts = render(grids.field(index), cameras, 3, 5, 8, generator=torch.Generator().manual_seed(4), chunk=4)
    assert torch.equal(whole.rgb, parts.rgb) and torch.equal(whole.depth, parts.depth)
    single = render(grids.float().field(index), cameras.to(dtype=torch.float32), 3, 5, 8)
    assert single.rgb.dtype == torch.float32 and whole.rgb.dtype == F64 and single.rgb.shape == (2, 3, 3, 5)
    with pytest.raises(ValueError, match="sigma"):
        render(lambda p: (p, p), cameras, 2, 2, 4)  # sigma (B, N, 3)


def test_render_step_memory_and_resolution_schedule():
    assert render_step_memory(1, 64, 64, 64) == 64**3 * (3 + 4 + 3 + 7) * 4
    assert render_step_memory(2, 32, 64, 8, channels=7) == 2 * render_step_memory(1, 32, 64, 8, channels=7)
    schedule = [(0.0, 32), (0.5, 64), (0.8, 128)]
    assert [resolution_at(p, schedule) for p in (0.0, 0.49, 0.5, 0.79, 1.0)] == [32, 32, 64, 64, 128]
    assert resolution_at(0.1, [(0.2, 16), (0.6, 8)]) == 16  # the first entry holds before its own fraction
    for bad, word in (([], "empty"), ([(0.5, 64), (0.0, 32)], "sorted"), ([(0.0, 0)], "size"), ([(0.0,)], "entry")):
        with pytest.raises(ValueError, match=word):
            resolution_at(0.3, bad)


# --- trilinear grids ---------------------------------------------------------------------------------------------

def test_sample_grid_is_exact_on_affine_functions_and_nodes():
    # catches a missing coordinate flip (grid_sample's x indexes W = our k): b has a different slope per axis
    torch.manual_seed(0)
    r, bound = 5, 1.3
    a, b = torch.tensor([0.5, -1.0], dtype=F64), torch.tensor([[1.0, -2.0, 3.0], [0.3, 0.0, -0.7]], dtype=F64)
    nodes = lattice(r, bound, F64)  # (R^3, 3)
    grid = (a + nodes @ b.T).T.reshape(1, 2, r, r, r)
    pts = (2 * torch.rand(1, 200, 3, dtype=F64) - 1) * bound
    assert torch.allclose(sample_grid(grid, pts, bound), a + pts @ b.T, atol=1e-12)
    noise = torch.randn(1, 2, r, r, r, dtype=F64)
    assert torch.allclose(sample_grid(noise, nodes[None], bound), noise.reshape(2, -1).T[None], atol=1e-12)


def test_sample_grid_axis_convention():
    r, bound = 4, 2.0
    grid = torch.zeros(1, 1, r, r, r, dtype=F64)
    grid[0, 0, r - 1] = 1.0  # only the nodes at x = +bound
    pts = torch.tensor([[[bound, 0, 0], [bound, -bound, bound], [-bound, 0, 0], [0, bound, 0], [0, 0, bound],
                         [2 * bound, 0, 0]]], dtype=F64)
    assert sample_grid(grid, pts, bound)[0, :, 0].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]


def test_fit_reproduces_an_analytic_field_at_the_nodes():
    grids = VoxelGrids(2, resolution=6, bound=1.2).double()
    field = lambda p: (3 * torch.exp(-(p**2).sum(-1)), 0.5 + 0.4 * torch.tanh(p))
    grids.fit(1, field)
    nodes = lattice(6, 1.2, F64)[None]
    sigma, rgb = grids(torch.tensor([1]), nodes)
    want_sigma, want_rgb = field(nodes)
    assert torch.allclose(sigma, want_sigma, atol=1e-9) and torch.allclose(rgb, want_rgb, atol=1e-9)
    assert not grids.density[0].any()  # the other scene is untouched


# --- cameras -----------------------------------------------------------------------------------------------------

def test_front_camera_axes_and_angles():
    # catches a flipped sin(azimuth) (azimuth 90 on -y) or sin(elevation), and right = up x f (a mirrored image)
    c2w = cams([0.0, 90.0, 0.0], [0.0, 0.0, 30.0], [2.0, 2.0, 2.0], [50.0, 50.0, 50.0]).c2w
    eye = torch.eye(3, dtype=F64)
    assert torch.allclose(c2w[0, :3], torch.stack([eye[1], eye[2], eye[0], 2 * eye[0]], 1), atol=1e-12)
    assert torch.allclose(c2w[1, :3, 3], torch.tensor([0, 2.0, 0], dtype=F64), atol=1e-12)
    assert torch.allclose(c2w[2, :3, 3], torch.tensor([math.sqrt(3), 0, 1.0], dtype=F64), atol=1e-12)


def test_rotations_are_proper_and_centre_ray_hits_the_origin():
    # catches a flipped right, up or back axis (det -1) and a camera looking away from the origin (centre ray)
    u = torch.rand(32, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    cameras = cameras_from_uniform(u, CameraRanges(elevation=(-80.0, 80.0)))
    rot = cameras.c2w[:, :3, :3]
    assert torch.allclose(rot.transpose(1, 2) @ rot, torch.eye(3, dtype=F64).expand(32, 3, 3), atol=1e-12)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(32, dtype=F64))
    o, d = rays(cameras, 5, 7)
    assert torch.allclose(d[:, 2, 3], -o[:, 2, 3] / cameras.distance[:, None], atol=1e-12)
    assert torch.allclose(d.norm(dim=-1), torch.ones(32, 5, 7, dtype=F64))


def _closest_pixel(cameras: Cameras, point, h: int, w: int) -> tuple[int, int]:
    o, d = rays(cameras, h, w)
    v = torch.tensor(point, dtype=F64) - o[0]
    miss = (v - (v * d[0]).sum(-1, keepdim=True) * d[0]).norm(dim=-1)  # distance from the point to each ray
    k = int(miss.argmin())
    return k // w, k % w


def test_row_zero_is_up_and_plus_y_is_right_from_the_front():
    # catches y_cam = +row (an upside-down image) and a mirrored x (from the front, world +y is image right)
    cameras = cams([0.0], [0.0], [3.0], [50.0])
    assert _closest_pixel(cameras, [0, 0, 0.6], 16, 16)[0] < 8  # +z: top half
    assert _closest_pixel(cameras, [0, 0, -0.6], 16, 16)[0] >= 8
    assert _closest_pixel(cameras, [0, 0.6, 0], 16, 16)[1] >= 8  # +y: right half
    assert _closest_pixel(cams([20.0], [30.0], [2.5], [60.0]), [0, 0, 0.5], 16, 16)[0] < 8


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_cameras_on_the_up_axis_are_finite(dtype):
    c2w = look_at(torch.tensor([[0, 0, 2.0], [0, 0, -2.0]], dtype=dtype))
    assert torch.isfinite(c2w).all()
    assert torch.allclose(c2w[:, :3, 2], torch.tensor([[0, 0, 1.0], [0, 0, -1.0]], dtype=dtype))  # back = -forward
    cameras = from_angles(torch.tensor([0.0, 45.0], dtype=dtype), torch.tensor([90.0, -90.0], dtype=dtype),
                          torch.tensor([2.0, 2.0], dtype=dtype), torch.tensor([50.0, 50.0], dtype=dtype))
    rot = cameras.c2w[:, :3, :3]
    assert torch.isfinite(rot).all()
    assert torch.allclose(rot.transpose(1, 2) @ rot, torch.eye(3, dtype=dtype).expand(2, 3, 3), atol=1e-6)
    o, d = rays(cameras, 3, 3)
    assert torch.allclose(d[:, 1, 1], -o[:, 1, 1] / 2, atol=1e-6)


def test_orbit_spacing():
    cameras = orbit(8, elevation=20.0, distance=1.5, fovy=55.0, start=10.0)
    assert len(cameras) == 8 and torch.allclose(cameras.azimuth, 10.0 + 45.0 * torch.arange(8))
    pos = cameras.c2w[:, :3, 3]
    assert torch.allclose(pos.norm(dim=-1), torch.full((8,), 1.5))
    assert torch.allclose(pos[:, 2], torch.full((8,), 1.5 * math.sin(math.radians(20))))
    flat = pos[:, :2] / pos[:, :2].norm(dim=-1, keepdim=True)
    cos = (flat * flat.roll(-1, 0)).sum(-1)
    assert torch.allclose(cos, torch.full((8,), math.cos(math.radians(45))), atol=1e-6)
    assert torch.allclose(cameras.fovy, torch.full((8,), math.radians(55)))


def test_cameras_from_uniform_maps_onto_the_ranges():
    ranges = CameraRanges()
    ends = cameras_from_uniform(torch.tensor([[0.0] * 4, [1.0] * 4], dtype=F64), ranges)
    assert ends.azimuth.tolist() == [-180.0, 180.0] and ends.elevation.tolist() == [-10.0, 45.0]
    assert ends.distance.tolist() == [1.5, 2.0]
    assert torch.allclose(ends.fovy, torch.tensor([math.radians(40), math.radians(70)], dtype=F64))
    b = 12
    u = torch.rand(b, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    az = cameras_from_uniform(u, ranges, stratified=True).azimuth
    bins = torch.floor((az + 180.0) / 360.0 * b).long()
    assert bins.tolist() == list(range(b))  # one azimuth in each of B equal strata, in order


def test_check_ranges():
    check_ranges(CameraRanges(), 0.5)  # 1.5 sin(20 deg) = 0.513
    with pytest.raises(ValueError, match=r"cameras\.distance.*0\.513.*0\.6"):
        check_ranges(CameraRanges(), 0.6)
    bad = {"elevation": (-100.0, 45.0), "distance": (2.0, 1.5), "fovy": (40.0, 180.0), "azimuth": (0.0, math.inf)}
    for key, value in bad.items():
        with pytest.raises(ValueError, match=rf"cameras\.{key}"):
            check_ranges(CameraRanges(**{key: value}), 0.1)
    with pytest.raises(ValueError, match=r"cameras\.distance must be > 0"):
        check_ranges(CameraRanges(distance=(0.0, 2.0)), 0.1)
    with pytest.raises(ValueError, match=r"cameras\.distance") as err:
        check_ranges(CameraRanges(distance=(0.4, 2.0), fovy=(170.0, 175.0)), 0.5)  # camera inside the object
    assert "\n" not in str(err.value)


def test_cameras_container():
    cameras = orbit(4).to(dtype=F64)
    assert cameras.c2w.dtype == F64 and cameras.azimuth.dtype == F64
    assert torch.equal(cameras.embedding()[1], cameras.c2w[1].reshape(16))
    assert len(cameras.select(-1)) == 1 and cameras.select(-1).azimuth.item() == 270.0
    picked = cameras.select(torch.tensor([2, 0]))
    assert picked.azimuth.tolist() == [180.0, 0.0]
    joined = Cameras.cat([picked, cameras.select(slice(1, 2))])
    assert len(joined) == 3 and joined.azimuth.tolist() == [180.0, 0.0, 90.0]
