"""Metrics of PDE samples: relative residuals and each channel's spread against the data."""
from __future__ import annotations

from .io import sample_student
from .teacher import PDETeacher


def student_metrics(teacher: PDETeacher, generator, n: int) -> dict[str, float]:
    """Relative residual of n student samples, and each channel's spread against the data (1 = matched)."""
    x = sample_student(generator, teacher, n).double()
    r = teacher.residual(x)
    out = {"relative_residual": float(r.mean()), "relative_residual_median": float(r.median())}
    for c, name in enumerate(teacher.pde.channels):  # model space has unit std per channel on the data
        out[f"std_{name}"] = float(x[:, c].std())
    return out


def residual_metrics(teacher: PDETeacher, x_model) -> dict[str, float]:
    """Mean and median relative residual of model-space samples."""
    r = teacher.residual(x_model.double())
    return {"relative_residual": float(r.mean()), "relative_residual_median": float(r.median())}


def conditional_metrics(teacher: PDETeacher, generator, problems: dict) -> dict[str, float]:
    """Relative L2 error of the unknown part for each kind of problem {kind: (solver fields, Observations)},
    the answers' relative residual and their solution error against the solver (measures.py)."""
    from .conditional import solve_with_conditional
    from .inverse import relative_error, unknown_mask
    from .measures import solution_error

    out = {}
    for kind, (truth, obs) in problems.items():
        x, _ = solve_with_conditional(generator, teacher, obs)
        xp = teacher.norm.to_physical(x.double())
        out[f"{kind}_error"] = float(relative_error(xp, truth, unknown_mask(teacher, kind)).mean())
        out[f"{kind}_residual"] = float(teacher.residual(x.double()).mean())
        out[f"{kind}_solution_error"] = float(solution_error(teacher.pde, xp)["solution_error"].mean())
    return out
