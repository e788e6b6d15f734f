"""Generators of 3D scenes, trained by the engine like any generator: the output is a render.

`Particles`: N scenes (voxel grids) per prompt; generator(z, view) renders particle z[b] from view.cameras[b]
(ProlificDreamer's particles, Dive3D's and SDS's single scene with N = 1). Parameter names `grids.density`,
`grids.colour` and `background` take their own learning rates (`train.lr: {generator.grids.colour: ...}`).
`Amortised`: G(z, prompt) -> scene. `Playground`: the pictures are the parameters (unit tests). The last
render's opacity is kept (with its graph) for the regularisers."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .cameras import Cameras
from .fields import VoxelGrids, blob_bias, sample_grid
from .render import Rendered, render
from .views import View


class Particles(nn.Module):
    def __init__(self, prompts: int, per_prompt: int = 8, resolution: int = 32, bound: float = 1.0,
                 n_samples: int = 64, background=(1.0, 1.0, 1.0), learn_background: bool = False,
                 blob: float = 10.0, blob_radius: float = 0.5, init_std: float = 0.0):
        super().__init__()
        self.prompts, self.per_prompt, self.bound, self.n_samples = prompts, per_prompt, bound, n_samples
        self.grids = VoxelGrids(prompts * per_prompt, resolution, bound, blob, blob_radius, init_std)
        if init_std > 0:  # distinct starting colours too, so identical particles do not follow identical paths
            self.grids.colour.data.normal_(0.0, init_std)
        bg = torch.tensor(background, dtype=torch.float32).logit(eps=1e-4).expand(prompts * per_prompt, 3).clone()
        self.background = nn.Parameter(bg, requires_grad=learn_background)  # logits of each particle's backdrop
        self.last_opacity: Tensor | None = None
        self._encoder: list = [None]  # set by encode_with, kept out of the parameters and the checkpoint

    def __len__(self) -> int:
        return len(self.grids)

    def prompt_of(self, particle: Tensor) -> Tensor:
        return torch.div(particle, self.per_prompt, rounding_mode="floor")

    def rendered(self, index: Tensor, cameras: Cameras, size: int) -> Rendered:
        """Particle index[b] from cameras[b]: rgb in [0, 1], opacity, depth."""
        return render(self.grids.field(index), cameras, size, size, n_samples=self.n_samples,
                      background=torch.sigmoid(self.background[index]), bound=self.bound)

    def render(self, index: Tensor, cameras: Cameras, size: int) -> Tensor:
        """(B, 3, size, size) in the diffusion space [-1, 1], or the teacher's latents when an encoder is set."""
        out = self.rendered(index, cameras, size)
        self.last_opacity = out.opacity
        return 2 * out.rgb - 1 if self.encoder is None else self.encoder(out.rgb)

    def encode_with(self, encoder) -> Particles:
        """Map renders through encoder(rgb in [0, 1]) -> the teacher's space (a frozen VAE; not a submodule)."""
        self._encoder = [encoder]
        return self

    @property
    def encoder(self):
        return self._encoder[0]

    def forward(self, z: Tensor, view: View) -> Tensor:
        return self.render(z, view.cameras, view.size)


class Amortised(nn.Module):
    """G(z, prompt) -> scene: an MLP from a latent and a prompt embedding to a coarse density + colour grid,
    upsampled trilinearly to `resolution`; generator(z, view) renders scene G(z[b], view.prompt[b]) from
    view.cameras[b]. For metrics and exports, "particle i" is the scene of a fixed latent (per_prompt per prompt,
    drawn once from seed 0), so the particle evaluation applies unchanged."""

    def __init__(self, prompts: int, per_prompt: int = 8, latent_dim: int = 16, hidden: int = 256, coarse: int = 8,
                 resolution: int = 16, bound: float = 1.0, n_samples: int = 64, background=(1.0, 1.0, 1.0),
                 blob: float = 10.0, blob_radius: float = 0.5):
        super().__init__()
        self.prompts, self.per_prompt, self.latent_dim = prompts, per_prompt, latent_dim
        self.coarse, self.resolution, self.bound, self.n_samples = coarse, resolution, bound, n_samples
        self.prompt = nn.Embedding(prompts, hidden)
        self.mlp = nn.Sequential(nn.Linear(latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, 4 * coarse**3))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        self.shape = VoxelGrids(1, resolution, bound, blob, blob_radius)  # the blob bias and activations only
        self.shape.requires_grad_(False)
        self.register_buffer("background", torch.tensor(background, dtype=torch.float32))
        self.register_buffer("eval_latents", torch.randn(prompts * per_prompt, latent_dim,
                                                         generator=torch.Generator().manual_seed(0)))
        self.last_opacity: Tensor | None = None
        self._encoder: list = [None]
        self.grids = _EvalScenes(self)

    def __len__(self) -> int:
        return self.prompts * self.per_prompt

    def prompt_of(self, particle: Tensor) -> Tensor:
        return torch.div(particle, self.per_prompt, rounding_mode="floor")

    def scenes(self, z: Tensor, prompt: Tensor) -> tuple[Tensor, Tensor]:
        """Raw density (B, 1, R, R, R) and colour logits (B, 3, R, R, R)."""
        h = self.mlp[0](z) + self.prompt(prompt.to(z.device))
        g = self.mlp[1:](h).reshape(-1, 4, *(self.coarse,) * 3)
        g = torch.nn.functional.interpolate(g, size=(self.resolution,) * 3, mode="trilinear", align_corners=True)
        return g[:, :1], g[:, 1:]

    def field(self, z: Tensor, prompt: Tensor):
        density, colour = self.scenes(z, prompt)

        def f(points: Tensor) -> tuple[Tensor, Tensor]:
            raw = sample_grid(density, points, self.bound)[..., 0]
            sigma = torch.nn.functional.softplus(raw + blob_bias(points, self.shape.blob, self.shape.blob_radius))
            return sigma, torch.sigmoid(sample_grid(colour, points, self.bound))

        return f

    def rendered_z(self, z: Tensor, prompt: Tensor, cameras: Cameras, size: int) -> Rendered:
        return render(self.field(z, prompt), cameras, size, size, n_samples=self.n_samples,
                      background=self.background, bound=self.bound)

    def rendered(self, index: Tensor, cameras: Cameras, size: int) -> Rendered:
        """"Particle" index[b]: the scene of fixed latent index[b] (metrics, samples, exports)."""
        return self.rendered_z(self.eval_latents[index], self.prompt_of(index), cameras, size)

    def forward(self, z: Tensor, view: View) -> Tensor:
        out = self.rendered_z(z, view.prompt, view.cameras, view.size)
        self.last_opacity = out.opacity
        return 2 * out.rgb - 1 if self._encoder[0] is None else self._encoder[0](out.rgb)

    def encode_with(self, encoder) -> Amortised:
        self._encoder = [encoder]
        return self


class _EvalScenes:
    """The fixed-latent scenes of an Amortised generator read like VoxelGrids (for mesh export and turntables)."""

    def __init__(self, g: Amortised):
        self._g = [g]
        self.bound = g.bound

    def _field(self, index: Tensor):
        g = self._g[0]
        return g.field(g.eval_latents[index], g.prompt_of(index))

    def __call__(self, index: Tensor, points: Tensor):
        return self._field(index)(points)

    def density_at(self, index: Tensor, points: Tensor) -> Tensor:
        return self._field(index)(points)[0]

    def colour_at(self, index: Tensor, points: Tensor) -> Tensor:
        return self._field(index)(points)[1]


class Playground(nn.Module):
    """The 2-D playground: the parameters are the pictures themselves (per_prompt per prompt, colour logits), shown
    whatever the camera. With a single camera (every range a point) the exact teacher is a fixed mixture of images,
    so a divergence's behaviour on the renders' space is seen without a renderer in between."""

    def __init__(self, prompts: int, per_prompt: int = 8, size: int = 32):
        super().__init__()
        self.prompts, self.per_prompt, self.size = prompts, per_prompt, size
        self.image = nn.Parameter(torch.zeros(prompts * per_prompt, 3, size, size))
        self.last_opacity: Tensor | None = None
        self._encoder: list = [None]

    def __len__(self) -> int:
        return self.prompts * self.per_prompt

    def prompt_of(self, particle: Tensor) -> Tensor:
        return torch.div(particle, self.per_prompt, rounding_mode="floor")

    def rendered(self, index: Tensor, cameras: Cameras, size: int) -> Rendered:
        if size != self.size:
            raise ValueError(f"the playground's pictures are {self.size}x{self.size}; asked for {size}")
        rgb = torch.sigmoid(self.image[index])
        return Rendered(rgb, torch.ones_like(rgb[:, :1]), torch.zeros_like(rgb[:, :1]))

    def render(self, index: Tensor, cameras: Cameras, size: int) -> Tensor:
        out = self.rendered(index, cameras, size)
        self.last_opacity = out.opacity
        return 2 * out.rgb - 1

    def forward(self, z: Tensor, view: View) -> Tensor:
        return self.render(z, view.cameras, view.size)
