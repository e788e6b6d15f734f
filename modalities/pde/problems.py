"""The PDEs of the backend, each a small object: how to draw solver data, which channels a sample
holds, which of them is the coefficient, the discrete residual the solver satisfies, and `solve`: the
solver's solution for a sample's own coefficient (what a generated solution is measured against).

A sample is a joint field x (C, N, N) in physical units (coefficient and solution as channels).
`relative_residual` = ||residual(x)||_2 / ||scale(x)||_2 per sample, the number reported everywhere."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from unidistill.engine.registry import Registry

from . import elliptic
from .fields import gaussian_random_field

PDES: Registry = Registry("pde")


def _fields(x: Tensor, channels: int, name: str) -> Tensor:
    if x.ndim != 4 or x.shape[1] != channels or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"{name}: samples must be (B, {channels}, N, N), got {tuple(x.shape)}")
    return x


@dataclass(frozen=True)
class Darcy:
    """-div(a grad u) = 1 on the unit square, u = 0 on the boundary (DiffusionPDE's Darcy flow).
    Channels: log a, u. a = 12 where a Gaussian random field is >= 0 and 3 elsewhere (`threshold`), or
    a = exp(g) with g the field (`lognormal`)."""

    coefficient: str = "threshold"  # threshold (a in {3, 12}) | lognormal (a = exp(GRF))
    boundary: str = "dirichlet0"  # only zero Dirichlet is implemented

    name = "darcy"
    channels = ("log_a", "u")
    boundaries = ("dirichlet0",)

    def __post_init__(self):
        _check_boundary(self)
        if self.coefficient not in ("threshold", "lognormal"):
            raise ValueError(f"darcy: unknown coefficient {self.coefficient!r}; choose threshold or lognormal")

    def generate(self, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
        g = gaussian_random_field(n, size, rng)
        a = np.where(g >= 0, 12.0, 3.0) if self.coefficient == "threshold" else np.exp(g)
        return np.stack([np.log(a), elliptic.solve_darcy(a)], axis=1)

    def solve(self, x: np.ndarray) -> np.ndarray:
        """x (n, 2, N, N) with the solution channel replaced by the solver's u for x's coefficient exp(log a)."""
        return np.stack([x[:, 0], elliptic.solve_darcy(np.exp(x[:, 0]))], axis=1)

    def residual(self, x: Tensor) -> Tensor:
        x = _fields(x, 2, self.name)
        return elliptic.darcy_residual(torch.exp(x[:, 0]), x[:, 1], 1.0)

    def scale(self, x: Tensor) -> Tensor:
        return torch.full((x.shape[0],), float(x.shape[-1]), dtype=x.dtype, device=x.device)  # ||f = 1||

    def coefficient_mask(self, size: int) -> Tensor:
        return _channel_mask(2, size, 0)


@dataclass(frozen=True)
class Helmholtz:
    """-Laplace(u) - k^2 u = f on the unit square, u = 0 on the boundary; f a Gaussian random field.
    k = 0 is Poisson. Channels: f, u."""

    k: float = 1.0  # wavenumber (DiffusionPDE uses 1)
    boundary: str = "dirichlet0"

    name = "helmholtz"
    channels = ("f", "u")
    boundaries = ("dirichlet0",)

    def __post_init__(self):
        _check_boundary(self)

    def generate(self, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
        f = gaussian_random_field(n, size, rng)
        return np.stack([f, elliptic.solve_helmholtz(f, self.k)], axis=1)

    def solve(self, x: np.ndarray) -> np.ndarray:
        """x (n, 2, N, N) with the solution channel replaced by the solver's u for x's source f."""
        return np.stack([x[:, 0], elliptic.solve_helmholtz(x[:, 0], self.k)], axis=1)

    def residual(self, x: Tensor) -> Tensor:
        x = _fields(x, 2, self.name)
        return elliptic.helmholtz_residual(x[:, 0], x[:, 1], self.k)

    def scale(self, x: Tensor) -> Tensor:
        return x[:, 0].flatten(1).norm(dim=1)

    def coefficient_mask(self, size: int) -> Tensor:
        return _channel_mask(2, size, 0)


@dataclass(frozen=True)
class Poisson(Helmholtz):
    """-Laplace(u) = f on the unit square, u = 0 on the boundary; f a Gaussian random field."""

    k: float = 0.0

    name = "poisson"

    def __post_init__(self):
        super().__post_init__()
        if self.k != 0:
            raise ValueError("poisson: k must be 0 (use pde: helmholtz for k != 0)")


@dataclass(frozen=True)
class Burgers:
    """Viscous Burgers on a periodic (x, t) grid (burgers.py): one channel u (T, N) with rows in time; the
    initial condition (row 0) is the coefficient."""

    nu: float = 0.05  # viscosity; resolved while max|u0| dx / nu < 2 (0.625 at N = 32)
    t_end: float = 1.0  # time of the last row
    boundary: str = "periodic"

    name = "burgers"
    channels = ("u",)
    boundaries = ("periodic",)

    def __post_init__(self):
        _check_boundary(self)

    def generate(self, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
        from .burgers import burgers_initial_conditions, solve_burgers

        u0 = burgers_initial_conditions(n, size, rng)
        return solve_burgers(u0, steps=size, t_end=self.t_end, nu=self.nu)[:, None]

    def solve(self, x: np.ndarray) -> np.ndarray:
        """x (n, 1, T, N) with rows 1.. replaced by the solver's evolution of x's initial row."""
        from .burgers import solve_burgers

        return solve_burgers(x[:, 0, 0], steps=x.shape[-2], t_end=self.t_end, nu=self.nu)[:, None]

    def residual(self, x: Tensor) -> Tensor:
        from .burgers import burgers_residual

        return burgers_residual(_fields(x, 1, self.name)[:, 0], t_end=self.t_end, nu=self.nu)

    def scale(self, x: Tensor) -> Tensor:
        from .burgers import burgers_scale

        return burgers_scale(_fields(x, 1, self.name)[:, 0], t_end=self.t_end)

    def coefficient_mask(self, size: int) -> Tensor:
        m = torch.zeros(1, size, size, dtype=torch.bool)
        m[0, 0] = True  # the initial condition
        return m


def _check_boundary(pde) -> None:
    if pde.boundary not in pde.boundaries:
        raise ValueError(f"{pde.name}: boundary {pde.boundary!r} is not supported; supported: "
                         f"{', '.join(pde.boundaries)}")


def _channel_mask(channels: int, size: int, channel: int) -> Tensor:
    m = torch.zeros(channels, size, size, dtype=torch.bool)
    m[channel] = True
    return m


for _pde in (Darcy, Poisson, Helmholtz, Burgers):
    PDES.register(_pde.name)(_pde)


def relative_residual(pde, x: Tensor) -> Tensor:
    """||residual||_2 / ||scale||_2 per sample (B,); x (B, C, N, N) in physical units."""
    return pde.residual(x).flatten(1).norm(dim=1) / pde.scale(x)


def options(pde) -> dict:
    """The constructor arguments of a PDE, for metadata files."""
    from dataclasses import asdict

    return asdict(pde)
