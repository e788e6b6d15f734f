"""PDE benchmark: Phys-Instruct students and one-pass solvers of the shipped EDM teachers, against the teachers.

Per PDE, unconditional samples of the teacher (Heun, 10-1000 steps) and of the students (1 and 4 steps, with and
without the PDE guidance, the same number of updates each), next to held-out solver data and trivial answers
(u = 0, the mean solution), scored by (modalities/pde/measures.py):
- the relative residual ||A(a)u - f|| / ||f||,
- the solution error: relative L2 distance of the sample's u from the solver's solution for the sample's own
  coefficient, and the same for its gradient,
- whether the coefficients look like the data's (Darcy: share of the high phase, share between the phases;
  all: the gap between the log power spectra), and the roughness of u (power above a quarter of the wavenumbers,
  against the data's).
Downstream (Darcy, Poisson): forward problems (coefficient + 3% of solution points observed) and inverse problems
(only those points) over held-out instances, for the guided teacher (DiffusionPDE-style), the student prior
(latent optimisation) and the one-pass conditional student, timed alternately in chunks in one run.

    python benchmarks/pde.py [--pdes darcy poisson helmholtz burgers] [--only train|measure] [--retable]

Students are distilled from the shipped examples into runs/bench_pde/<pde>/<variant> when missing (a run that
stopped resumes). Writes benchmarks/results/pde.json, docs/img/pde_*.png and the pde section of docs/results.md.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import read_result, replace_section, write_result

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "bench_pde"
TEACHER_STEPS = [10, 50, 200, 1000]
TEACHER_ONLY_STEPS = [10, 50, 200]  # PDEs without students: 1000 steps adds nothing past 200 (Darcy, Poisson)
STUDENT_PDES = ("darcy", "poisson")
FOUR = "student_sigmas=[5.0, 2.0, 0.8, 0.3]"
FAIR = "train.steps=300"  # a 4-step update costs about 2.5x a 1-step one: 300 updates, about the same compute
SOLUTION_NORM = "distill.reward={name: residual, alpha: 1000.0, through: solution, norm: solution}"
GUIDED = "ikl + guidance (Phys-Instruct), 1 step"  # the shipped example; its student is also the latent prior
VARIANTS = {  # label -> overrides of examples/pde/<pde>_phys_instruct.yaml (about the same compute each)
    "ikl, 1 step": ["distill.reward=null"],
    GUIDED: [],
    "ikl + guidance, 4 steps": [FOUR, FAIR],
    "ikl + solution-norm guidance, 1 step": [SOLUTION_NORM],
    "ikl, 4 steps": ["distill.reward=null", FOUR, FAIR],
}
SOLVER = "one-pass conditional student"  # examples/pde/<pde>_solver.yaml
FRACTION = 0.03  # observed share of solution points (DiffusionPDE observes ~3%)
STUDENT_SOLVE = {"iters": 20, "lr": 0.1, "pde_weight": 1.0, "prior_weight": 1e-3}
# DiffusionPDE-style guided teacher: 100 Euler steps; weights picked on 12 Darcy instances outside the test set
TEACHER_SOLVE = {"forward": {"steps": 100, "obs_weight": 10.0, "pde_weight": 0.03},
                 "inverse": {"steps": 100, "obs_weight": 100.0, "pde_weight": 0.03}}


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def train_seconds(run: Path) -> float:
    """Seconds spent in training steps (log.csv's time/step_s over each logging interval; evaluation and
    checkpoint writing excluded), so a resumed run is counted once."""
    import csv

    import yaml

    last = yaml.safe_load((run / "config.yaml").read_text())["train"]["steps"]
    rows = list(csv.DictReader((run / "log.csv").open()))
    total, prev = 0.0, 0
    for row in rows:
        step = int(row["step"])
        if step > last:  # logged before an interruption, past the step the exported student stopped at
            break
        if step <= prev:  # re-logged after resuming from an earlier checkpoint: keep the latest timing only
            continue
        total += (step - prev) * float(row["time/step_s"])
        prev = step
    return total


def distill(pde: str, label: str) -> dict:
    """Distil one variant into runs/bench_pde/<pde>/<variant> unless finished (an unfinished run resumes)."""
    from unidistill.engine.cli import main as cli

    out = RUNS / pde / slug(label)
    example = f"{pde}_solver.yaml" if label == SOLVER else f"{pde}_phys_instruct.yaml"
    if not (out / "student" / "student.json").is_file():
        args = ["distill", str(ROOT / "examples" / "pde" / example), "--out", str(out)]
        for o in VARIANTS.get(label, []) + ["train.progress=false"]:
            args += ["--set", o]
        if cli(args) != 0:
            raise RuntimeError(f"distillation {pde} / {label} failed")
    return {"distill_s": train_seconds(out), "run": str(out.relative_to(ROOT))}


def measured_row(label, pde, x, ref, nfe, wall, n) -> dict:
    from unidistill.modalities.pde.measures import field_measures

    row = {"sampler": label, "nfe": nfe, "ms_per_sample": None if wall is None else 1000 * wall / n,
           **field_measures(pde, x, ref)}
    print(f"  {label}: residual {row['relative_residual']:.3e}, solution error {row['solution_error']:.4f}, "
          f"gradient error {row['gradient_error']:.4f}, u high band {row['solution_high_band']:.2f}", flush=True)
    return row


def references(pde, test: torch.Tensor, train: torch.Tensor) -> list[dict]:
    """Held-out solver data and the trivial answers, each against the same reference set."""
    from unidistill.modalities.pde.measures import solution_part

    half = len(test) // 2
    ref, held = test[:half], test[half:]
    part = solution_part(pde, test.shape[-1])
    rows = [measured_row("held-out solver data", pde, held, ref, "-", None, len(held))]
    for name, guess in (("u = 0", torch.zeros_like(held[:1])), ("mean solution (of the training fields)",
                                                                 train.mean(0, keepdim=True))):
        rows.append(measured_row(name, pde, torch.where(part, guess.expand_as(held), held), ref, "-", None,
                                 len(held)))
    return rows


def unconditional(pde: str, teacher, ref: torch.Tensor, n: int, steps: list[int]) -> tuple[list[dict], dict]:
    from unidistill.engine.sampling import ode_nfe
    from unidistill.modalities.pde.io import load_student, sample_student
    from unidistill.modalities.shared.sampling import sample_teacher

    rows, kept = [], {}
    for s in steps:
        start = time.perf_counter()
        x = sample_teacher(teacher.denoiser, n, s, generator=torch.Generator().manual_seed(0), batch=256)
        wall = time.perf_counter() - start
        xp = teacher.norm.to_physical(x.double())
        rows.append(measured_row(f"teacher, {s} Heun steps", teacher.pde, xp, ref, ode_nfe(s), wall, n))
        kept[rows[-1]["sampler"]] = xp
    for label in VARIANTS if pde in STUDENT_PDES else []:
        gen, _ = load_student(RUNS / pde / slug(label))
        start = time.perf_counter()
        x = sample_student(gen, teacher, n, seed=0)
        wall = time.perf_counter() - start
        xp = teacher.norm.to_physical(x.double())
        rows.append(measured_row(label, teacher.pde, xp, ref, gen.n_steps, wall, n))
        kept[label] = xp
    return rows, kept


def downstream(pde: str, teacher, test: torch.Tensor, chunk: int = 25) -> tuple[list[dict], dict]:
    """Forward and inverse problems over the test instances; the three solvers alternate per chunk."""
    from unidistill.modalities.pde.conditional import solve_with_conditional
    from unidistill.modalities.pde.inverse import (
        make_problem,
        relative_error,
        solve_with_student,
        solve_with_teacher,
        unknown_mask,
    )
    from unidistill.modalities.pde.io import load_student

    prior, _ = load_student(RUNS / pde / slug(GUIDED))
    solver, _ = load_student(RUNS / pde / slug(SOLVER))
    names = {"teacher": f"guided teacher ({TEACHER_SOLVE['forward']['steps']} steps)",
             "prior": f"student prior ({STUDENT_SOLVE['iters']} latent steps)", "solver": SOLVER}
    rows, examples = [], {}
    for kind in ("forward", "inverse"):
        part = unknown_mask(teacher, kind)
        errs, wall, nfe = {w: [] for w in names}, {w: 0.0 for w in names}, {}
        for lo in range(0, len(test), chunk):
            x = test[lo:lo + chunk]
            obs = make_problem(teacher, x, kind, FRACTION, seed=lo)
            for who in names:
                start = time.perf_counter()
                if who == "prior":
                    xm, nfe[who] = solve_with_student(prior, teacher, obs, **STUDENT_SOLVE, seed=lo)
                elif who == "teacher":
                    xm, nfe[who] = solve_with_teacher(teacher, obs, **TEACHER_SOLVE[kind], seed=lo)
                else:
                    xm, nfe[who] = solve_with_conditional(solver, teacher, obs, seed=lo)
                wall[who] += time.perf_counter() - start
                xp = teacher.norm.to_physical(xm.detach().double())
                errs[who].append(relative_error(xp, x, part))
                if lo == 0:
                    examples[(kind, who)] = (x[:2], xp[:2], obs.mask[:2])
        for who, how in names.items():
            e = torch.cat(errs[who])
            backward = {"prior": nfe[who] - 1, "teacher": nfe[who], "solver": 0}[who]
            rows.append({"problem": kind, "solver": how, "who": who, "instances": len(e), "error_mean": float(e.mean()),
                         "error_median": float(e.median()), "nfe": nfe[who], "backward_passes": backward,
                         "ms_per_instance": 1000 * wall[who] / len(e)})
            print(f"  {kind} / {how}: error {rows[-1]['error_mean']:.3f}, {rows[-1]['ms_per_instance']:.1f} ms",
                  flush=True)
    return rows, examples


def plot_examples(pde: str, teacher, examples: dict) -> list[str]:
    from unidistill.modalities.pde.plots import plot_fields

    paths = []
    names = teacher.pde.channels
    for kind in ("forward", "inverse"):
        c = 1 if kind == "forward" else 0  # the channel asked for
        rows = []
        for i in range(2):
            truth, obs_mask = examples[(kind, "teacher")][0][i], examples[(kind, "teacher")][2][i]
            row = [(f"{names[0]} (solver)", truth[0].numpy()), (f"{names[1]} (solver)", truth[1].numpy()),
                   ("observed points", obs_mask[1].float().numpy())]
            for who, short in (("teacher", "guided teacher"), ("prior", "student prior"), ("solver", "one pass")):
                est = examples[(kind, who)][1][i]
                row += [(f"{names[c]} ({short})", est[c].numpy()),
                        (f"error ({short})", (est[c] - truth[c]).abs().numpy())]
            rows.append(row)
        path = ROOT / "docs" / "img" / f"pde_{pde}_{kind}.png"
        plot_fields(rows, path, title=f"{pde}, {kind} problem ({100 * FRACTION:.0f}% of solution points observed)")
        paths.append(str(path.relative_to(ROOT)))
    return paths


def plot_solution_error(pde: str, teacher, kept: dict) -> str:
    """Generated coefficient and solution, the solver's solution for that coefficient, and their difference."""
    from unidistill.modalities.pde.measures import solver_reference
    from unidistill.modalities.pde.plots import plot_fields

    best = [k for k in kept if k.startswith("teacher, 50")] + [k for k in (GUIDED, "ikl, 1 step") if k in kept]
    rows = []
    for label in best:
        x = kept[label][:2]
        ref = solver_reference(teacher.pde, x)
        for i in range(len(x)):
            if teacher.pde.name == "burgers":
                gen, sol = x[i, 0, 1:], ref[i, 0, 1:]
                rows.append([(f"u(t, x) ({label})", gen.numpy()), ("solver from its u0", sol.numpy()),
                             ("|difference|", (gen - sol).abs().numpy())])
            else:
                rows.append([(f"{teacher.pde.channels[0]} ({label})", x[i, 0].numpy()),
                             ("generated u", x[i, 1].numpy()), ("solver's u for it", ref[i, 1].numpy()),
                             ("|difference|", (x[i, 1] - ref[i, 1]).abs().numpy())])
    path = ROOT / "docs" / "img" / f"pde_{pde}_solution_error.png"
    plot_fields(rows, path, title=f"{pde}: generated solution against the solver's for the generated coefficient")
    return str(path.relative_to(ROOT))


def plot_spectra(spectra: dict) -> str:
    """Power of generated u over the data's, per radial wavenumber shell, one panel per PDE."""
    from unidistill.modalities.shared.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(spectra), figsize=(4.2 * len(spectra), 3.4), squeeze=False)
    for ax, (pde, curves) in zip(axes[0], spectra.items()):
        for label, ratio in curves.items():
            ax.semilogy(np.arange(1, len(ratio) + 1), ratio, label=label, lw=1.2)
        ax.axhline(1.0, color="k", lw=0.8, ls=":")
        ax.set_title(f"{pde}: power of u / data's", fontsize=9)
        ax.set_xlabel("radial wavenumber shell", fontsize=8)
        ax.legend(fontsize=6)
    fig.tight_layout()
    path = save_figure(fig, ROOT / "docs" / "img" / "pde_spectra.png", dpi=90)
    return str(path.relative_to(ROOT))


def _fmt(v, spec: str) -> str:
    return "-" if v is None or v == "-" else format(v, spec)


def table(res: dict) -> str:
    lines = []
    order = ["darcy", "poisson", "helmholtz", "burgers"]
    for pde, r in sorted(res["pdes"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 9):
        darcy = pde == "darcy"
        coef_head = "high phase / between" if darcy else "coef spectrum gap"
        lines += [f"### {pde}", "",
                  f"{r['n']} unconditional samples per row (fixed seed) against {r['n_ref']} held-out solver fields. "
                  "Solution error: relative L2 distance of the sample's u from the solver's u for the sample's own "
                  "coefficient (gradient: of the finite-difference gradient). Coefficient: "
                  + ("share of entries in the high phase (data: about 0.5) and between the phases (data: 0). "
                     if darcy else "mean |log10| ratio of the coefficient's power spectrum to the data's (0 = equal). ")
                  + "u high band: power above a quarter of the wavenumbers over the data's (1 = as rough as the data).",
                  "", f"| sampler | NFE | residual | solution error | gradient error | {coef_head} | u high band | "
                  "ms / sample | distill time |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for row in r["references"] + r["unconditional"]:
            d = r["distill"].get(row["sampler"], {}).get("distill_s")
            coef = (f"{row['phase_high']:.2f} / {row['between_phases']:.3f}" if darcy
                    else f"{row['coef_spectrum_gap']:.3f}")
            name = row["sampler"] if row["sampler"] not in r["distill"] else f"**{row['sampler']}**"
            lines.append(f"| {name} | {row['nfe']} | {row['relative_residual']:.3g} | {row['solution_error']:.4f} | "
                         f"{row['gradient_error']:.4f} | {coef} | {row['solution_high_band']:.2f} | "
                         f"{_fmt(row['ms_per_sample'], '.1f')} | {'-' if d is None else f'{d:.0f} s'} |")
        if r.get("downstream"):
            lines += ["", f"Downstream problems over {r['downstream'][0]['instances']} held-out instances, "
                      f"{100 * FRACTION:.0f}% of solution points observed; relative L2 error of the unknown field "
                      "(forward: solution, inverse: coefficient channel). The three solvers alternate over chunks "
                      "of 25 instances in one run.", "",
                      "| problem | solver | error (mean) | median | NFE | backward passes | ms / instance |",
                      "| --- | --- | --- | --- | --- | --- | --- |"]
            for row in r["downstream"]:
                lines.append(f"| {row['problem']} | {row['solver']} | {row['error_mean']:.3f} | "
                             f"{row['error_median']:.3f} | {row['nfe']} | {row['backward_passes']} | "
                             f"{row['ms_per_instance']:.1f} |")
            g = goals(r)
            ok = {True: "met", False: "not met"}
            lines += ["", f"Goals: the guided 1-step student's residual is {g['residual_ratio']:.2f}x below the "
                      f"teacher's best (goal >= 8x: {ok[g['residual_ratio'] >= 8]}) and its solution error "
                      f"{g['solution_error']:.4f} (goal < 0.05: {ok[g['solution_error'] < 0.05]}); the one-pass "
                      f"student's forward error is {g['forward_error_ratio']:.2f}x the guided teacher's (goal <= 1.5x: "
                      f"{ok[g['forward_error_ratio'] <= 1.5]}) at {g['forward_time_ratio']:.4f} of its time (goal "
                      f"< 0.02: {ok[g['forward_time_ratio'] < 0.02]}); inverse: {g['inverse_error_ratio']:.2f}x the "
                      f"guided teacher's error at {g['inverse_time_ratio']:.4f} of its time.", ""]
        lines += [""] + [f"![{p}]({Path(p).relative_to('docs')})" for p in r["plots"]] + [""]
    if res.get("spectra_plot"):
        lines += [f"![{res['spectra_plot']}]({Path(res['spectra_plot']).relative_to('docs')})", ""]
    return "\n".join(lines)


def goals(r: dict) -> dict:
    teacher = [row for row in r["unconditional"] if row["sampler"].startswith("teacher")]
    floor = min(row["relative_residual"] for row in teacher)
    # the teacher's best: the cheapest step count within 1% of its lowest residual (more steps stop paying)
    best = min((row for row in teacher if row["relative_residual"] <= 1.01 * floor), key=lambda row: row["nfe"])
    guided = next(row for row in r["unconditional"] if row["sampler"] == GUIDED)
    out = {"residual_ratio": best["relative_residual"] / guided["relative_residual"],
           "solution_error": guided["solution_error"], "nfe_ratio": best["nfe"] / guided["nfe"]}
    for kind in ("forward", "inverse"):
        rows = {row["who"]: row for row in r["downstream"] if row["problem"] == kind}
        out[f"{kind}_error_ratio"] = rows["solver"]["error_mean"] / rows["teacher"]["error_mean"]
        out[f"{kind}_time_ratio"] = rows["solver"]["ms_per_instance"] / rows["teacher"]["ms_per_instance"]
    return out


def main() -> None:
    from unidistill.modalities.pde.io import load_teacher
    from unidistill.modalities.pde.measures import spectrum_ratio

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pdes", nargs="+", default=["darcy", "poisson", "helmholtz", "burgers"])
    ap.add_argument("--n", type=int, default=64, help="unconditional samples per row")
    ap.add_argument("--instances", type=int, default=100, help="held-out forward/inverse instances")
    ap.add_argument("--only", choices=["train", "measure"], help="only distil the students, or only measure")
    ap.add_argument("--retable", action="store_true", help="rewrite docs/results.md from the saved json")
    args = ap.parse_args()
    res = read_result("pde") or {"pdes": {}}
    res.setdefault("spectra", {})
    if not args.retable:
        for pde in args.pdes:
            print(f"== {pde}", flush=True)
            students = pde in STUDENT_PDES
            dist = {label: distill(pde, label) for label in [*VARIANTS, SOLVER]} if students else {}
            if args.only == "train":
                continue
            teacher = load_teacher(pde)
            size = teacher.info["size"]
            rng = np.random.default_rng(teacher.info.get("seed", 0) + 1)  # the dataset's held-out stream
            test = torch.from_numpy(teacher.pde.generate(max(args.instances, 2 * args.n), size, rng))
            seed = teacher.info.get("seed", 0)
            train = torch.from_numpy(teacher.pde.generate(256, size, np.random.default_rng(seed)))
            ref = test[:args.n]
            r = {"n": args.n, "n_ref": len(ref), "distill": dist, "references": references(teacher.pde, test, train)}
            steps = TEACHER_STEPS if students else TEACHER_ONLY_STEPS
            r["unconditional"], kept = unconditional(pde, teacher, ref, args.n, steps)
            u = (lambda x: x[:, 0]) if pde == "burgers" else (lambda x: x[:, 1])
            spectra = {k: spectrum_ratio(u(v), u(ref)).tolist() for k, v in kept.items()
                       if k.startswith("teacher, 50") or k in (GUIDED, "ikl, 1 step")}
            r["plots"] = [plot_solution_error(pde, teacher, kept)]
            if students:
                r["downstream"], examples = downstream(pde, teacher, test[:args.instances])
                r["plots"] += plot_examples(pde, teacher, examples)
                r["goals"] = goals(r)
            res = read_result("pde") or res  # another PDE may have been measured meanwhile by a second process
            res.setdefault("spectra", {})[pde] = spectra
            res["pdes"][pde] = r
            res["spectra_plot"] = plot_spectra(res["spectra"])
            write_result("pde", res)
    if args.only != "train":
        replace_section("pde", table(res))


if __name__ == "__main__":
    main()
