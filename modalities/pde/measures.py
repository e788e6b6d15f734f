"""What a scientist reads off a generated field (physical units, float64):

- `solution_error`: solve the PDE for the sample's own coefficient with the backend's solver and compare the
  sample's solution part with it, relative L2 over the solution entries, and the same for its gradient field
  (finite differences: zero Dirichlet boundary included for the elliptic PDEs, periodic in x and one-sided in
  t for Burgers). Solver data scores 0 (round-off); u = 0 scores exactly 1.
- `coefficient_stats`: is the coefficient distributed like the data's? Mean, spread and the radially
  averaged power spectrum against reference samples, and for Darcy's two-phase coefficient the share of each
  phase and of values between the phases. A generator that solves the PDE only for easy (smooth,
  one-phase) coefficients shows up here.
- `spectrum_ratio`: generated over reference power per radial wavenumber shell, of any channel; where a
  sampler's solutions are rough it rises above 1 at high wavenumbers.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def _check(pde, x: Tensor) -> Tensor:
    c = len(pde.channels)
    if x.ndim != 4 or x.shape[1] != c or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"{pde.name}: samples must be (B, {c}, N, N) in physical units, got {tuple(x.shape)}")
    return x.detach().double().cpu()


def solution_part(pde, size: int) -> Tensor:
    """(C, N, N) bool: the entries the solver determines from the coefficient."""
    return ~pde.coefficient_mask(size)


def _gradient(pde, x: Tensor) -> Tensor:
    """Finite-difference gradient of each channel, stacked (B, 2C, ., .) along the two grid axes."""
    if pde.boundary == "periodic":  # Burgers: rows are time (one-sided), columns periodic space
        dx = torch.roll(x, -1, dims=-1) - x
        dt = torch.diff(x, dim=-2)
        return torch.cat([dx.flatten(2), dt.flatten(2)], dim=2)
    p = torch.nn.functional.pad(x, (1, 1, 1, 1))  # the implicit zero boundary nodes
    return torch.cat([torch.diff(p, dim=-1).flatten(2), torch.diff(p, dim=-2).flatten(2)], dim=2)


def solver_reference(pde, x: Tensor) -> Tensor:
    """The joint field with its solution part replaced by the solver's answer for its coefficient (B, C, N, N)."""
    x = _check(pde, x)
    return torch.from_numpy(pde.solve(x.numpy()))


def solution_error(pde, x: Tensor, reference: Tensor | None = None) -> dict[str, Tensor]:
    """Per sample (B,): relative L2 error of the solution part, and of its gradient, against the solver's
    solution for the sample's own coefficient (`reference`, computed when not given)."""
    x = _check(pde, x)
    ref = solver_reference(pde, x) if reference is None else reference.double().cpu()
    part = solution_part(pde, x.shape[-1])
    keep = lambda f: torch.where(part, f, torch.zeros_like(f))
    d, r = keep(x) - keep(ref), keep(ref)
    rel = lambda a, b: a.flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1).clamp_min(1e-300)
    return {"solution_error": rel(d, r), "gradient_error": rel(_gradient(pde, d), _gradient(pde, r))}


def radial_spectrum(fields: Tensor) -> Tensor:
    """Mean power |FFT|^2 per integer radial wavenumber shell, averaged over samples: (B, N, N) -> (N // 2 + 1,).
    The field's mean is removed first, so shell 0 is zero."""
    f = fields.double()
    f = f - f.mean(dim=(-2, -1), keepdim=True)
    n = f.shape[-1]
    power = torch.fft.fft2(f).abs().square().mean(0) / n**4
    k = torch.fft.fftfreq(n, d=1.0 / n)
    shell = torch.sqrt(k[:, None] ** 2 + k[None, :] ** 2).round().long().clamp(max=n // 2)
    return torch.zeros(n // 2 + 1, dtype=f.dtype).index_add_(0, shell.flatten(), power.flatten()) / torch.bincount(
        shell.flatten(), minlength=n // 2 + 1)


def spectrum_ratio(x: Tensor, reference: Tensor) -> Tensor:
    """radial_spectrum(x) / radial_spectrum(reference) for shells 1..N/2 ((N // 2,) float64)."""
    return radial_spectrum(x)[1:] / radial_spectrum(reference)[1:].clamp_min(1e-300)


def spectrum_gap(x: Tensor, reference: Tensor) -> float:
    """Mean |log10| of spectrum_ratio over shells 1..N/2: 0 when the spectra agree, 1 = a factor 10 on average."""
    return float(spectrum_ratio(x, reference).log10().abs().mean())


def high_band_ratio(x: Tensor, reference: Tensor) -> float:
    """Generated over reference power summed over the upper half of the shells (k > N/4): roughness."""
    a, b = radial_spectrum(x), radial_spectrum(reference)
    hi = slice(x.shape[-1] // 4 + 1, None)
    return float(a[hi].sum() / b[hi].sum().clamp_min(1e-300))


DARCY_PHASES = (math.log(3.0), math.log(12.0))  # log a of the threshold coefficient's two phases


def coefficient_stats(pde, x: Tensor, reference: Tensor) -> dict[str, float]:
    """Statistics of the coefficient part of x against reference solver fields (both physical, (B, C, N, N))."""
    x, reference = _check(pde, x), _check(pde, reference)
    if pde.name == "burgers":  # the initial row: a 1-D field per sample
        a, ref = x[:, 0, 0], reference[:, 0, 0]
        out = {"coef_mean": float(a.mean()), "coef_std": float(a.std()), "coef_std_ref": float(ref.std()),
               "coef_peak": float(a.abs().amax(1).mean()), "coef_peak_ref": float(ref.abs().amax(1).mean())}
        pa, pr = torch.fft.rfft(a - a.mean(1, keepdim=True)).abs().square().mean(0), torch.fft.rfft(
            ref - ref.mean(1, keepdim=True)).abs().square().mean(0)
        out["coef_spectrum_gap"] = float((pa[1:] / pr[1:].clamp_min(1e-300)).log10().abs().mean())
        return out
    a, ref = x[:, 0], reference[:, 0]
    out = {"coef_mean": float(a.mean()), "coef_mean_ref": float(ref.mean()), "coef_std": float(a.std()),
           "coef_std_ref": float(ref.std()), "coef_spectrum_gap": spectrum_gap(a, ref)}
    if pde.name == "darcy" and getattr(pde, "coefficient", "") == "threshold":
        lo, hi = DARCY_PHASES
        mid, tol = (lo + hi) / 2, 0.1 * (hi - lo)
        out["phase_high"] = float((a > mid).double().mean())
        out["phase_high_ref"] = float((ref > mid).double().mean())
        # entries more than 10% of the phase gap away from both phases: a blurred or invented coefficient
        out["between_phases"] = float(((a - lo).abs().minimum((a - hi).abs()) > tol).double().mean())
    return out


def field_measures(pde, x: Tensor, reference: Tensor) -> dict[str, float]:
    """Everything above for samples x against reference solver data: residual, solution and gradient errors
    (mean and median), coefficient statistics, and the solution part's roughness against the data's."""
    from .problems import relative_residual

    x = _check(pde, x)
    res = relative_residual(pde, x)
    err = solution_error(pde, x)
    out = {"relative_residual": float(res.mean()), "relative_residual_median": float(res.median())}
    for k, v in err.items():
        out[k], out[f"{k}_median"] = float(v.mean()), float(v.median())
    out.update(coefficient_stats(pde, x, reference))
    u, u_ref = _solution_fields(pde, x), _solution_fields(pde, _check(pde, reference))
    out["solution_high_band"] = high_band_ratio(u, u_ref)
    return out


def _solution_fields(pde, x: Tensor) -> Tensor:
    """(B, N, N) solution channel (elliptic: channel 1; Burgers: the whole (t, x) field)."""
    return x[:, 0] if pde.name == "burgers" else x[:, 1]


def baselines(pde, reference: Tensor, mean_solution: Tensor | None = None) -> dict[str, dict[str, float]]:
    """The solution error of trivial answers on reference solver fields: u = 0 (1 by construction) and the
    mean solution field (of `mean_solution` fields, else of the reference itself), coefficient kept."""
    ref = _check(pde, reference)
    part = solution_part(pde, ref.shape[-1])
    mean = (ref if mean_solution is None else _check(pde, mean_solution)).mean(0, keepdim=True)
    out = {}
    for name, guess in (("u = 0", torch.zeros_like(ref[:1])), ("mean solution", mean)):
        x = torch.where(part, guess.expand_as(ref), ref)
        err = solution_error(pde, x, reference=ref)
        out[name] = {k: float(v.mean()) for k, v in err.items()}
    return out

