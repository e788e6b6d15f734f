"""PDE benchmark: Phys-Instruct students of the shipped EDM teachers against the teachers' own samplers.

Per PDE:
- relative PDE residual ||A(a)u - f|| / ||f|| of unconditional samples: teacher (Heun, 10/50/200/1000
  steps) and students (1 and 4 steps, with and without the residual guidance term; SIM + guidance for
  comparison), beside the floor of held-out solver data (float64 and float32);
- forward problem (coefficient + a few % of solution points observed) and inverse problem (only the
  solution points observed): relative L2 error of the unknown part against the solver, over the held-out
  instances, for the student prior (latent optimisation) and DiffusionPDE-style guided teacher sampling;
  the two are timed in alternating chunks in one run.

    python benchmarks/pde.py [--pdes darcy poisson] [--only train|measure] [--retable]

Students are distilled (from the shipped examples) into runs/bench_pde/<pde>/<variant> when missing.
Writes benchmarks/results/pde.json, field plots in docs/img/pde_*.png and the pde section of docs/results.md.
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
FOUR = "student_sigmas=[5.0, 2.0, 0.8, 0.3]"
SHORT = "train.steps=300"  # 4-step students cost ~2.5x per step; half the steps fit the CPU budget
VARIANTS = {  # label -> overrides of examples/pde/<pde>_phys_instruct.yaml
    "ikl, 1 step": ["distill.reward=null"],
    "ikl + guidance (Phys-Instruct), 1 step": [],
    "ikl, 4 steps": ["distill.reward=null", FOUR, SHORT],
    "ikl + guidance (Phys-Instruct), 4 steps": [FOUR, SHORT],
    "sim + guidance, 1 step": ["distill.divergence={name: sim, c: 1.0, alpha: 1.0, weighting: sigma4}"],
}
PRIOR = "ikl + guidance (Phys-Instruct), 1 step"  # the student used as the downstream prior
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
    if not (out / "student" / "student.json").is_file():
        args = ["distill", str(ROOT / "examples" / "pde" / f"{pde}_phys_instruct.yaml"), "--out", str(out)]
        for o in VARIANTS[label] + ["train.progress=false"]:
            args += ["--set", o]
        if cli(args) != 0:
            raise RuntimeError(f"distillation {pde} / {label} failed")
    return {"distill_s": train_seconds(out), "run": str(out.relative_to(ROOT))}


def residual_row(label, teacher, x, nfe, wall, n) -> dict:
    r = teacher.residual(x.double())
    row = {"sampler": label, "nfe": nfe, "residual_mean": float(r.mean()), "residual_median": float(r.median()),
           "ms_per_sample": 1000 * wall / n}
    print(f"  {label}: residual {row['residual_mean']:.3e} (median {row['residual_median']:.3e}), NFE {nfe}, "
          f"{row['ms_per_sample']:.1f} ms/sample", flush=True)
    return row


def unconditional(pde: str, teacher, n: int) -> list[dict]:
    from unidistill.engine.sampling import ode_nfe
    from unidistill.modalities.pde.io import load_student, sample_student
    from unidistill.modalities.shared.sampling import sample_teacher

    rows = []
    for steps in TEACHER_STEPS:
        start = time.perf_counter()
        x = sample_teacher(teacher.denoiser, n, steps, generator=torch.Generator().manual_seed(0), batch=256)
        rows.append(residual_row(f"teacher, {steps} Heun steps", teacher, x, ode_nfe(steps), time.perf_counter()
                                 - start, n))
    for label in VARIANTS:
        gen, _ = load_student(RUNS / pde / slug(label))
        start = time.perf_counter()
        x = sample_student(gen, teacher, n, seed=0)
        rows.append(residual_row(label, teacher, x, gen.n_steps, time.perf_counter() - start, n))
    return rows


def downstream(pde: str, teacher, test: torch.Tensor, chunk: int = 25) -> tuple[list[dict], dict]:
    """Forward and inverse problems over the test instances; student and teacher alternate per chunk."""
    from unidistill.modalities.pde.inverse import (
        make_problem,
        relative_error,
        solve_with_student,
        solve_with_teacher,
        unknown_mask,
    )
    from unidistill.modalities.pde.io import load_student

    gen, _ = load_student(RUNS / pde / slug(PRIOR))
    rows, examples = [], {}
    for kind in ("forward", "inverse"):
        part = unknown_mask(teacher, kind)
        errs = {"student": [], "teacher": []}
        wall = {"student": 0.0, "teacher": 0.0}
        nfe = {}
        for lo in range(0, len(test), chunk):
            x = test[lo:lo + chunk]
            obs = make_problem(teacher, x, kind, FRACTION, seed=lo)
            for who in ("student", "teacher"):
                start = time.perf_counter()
                if who == "student":
                    xm, nfe[who] = solve_with_student(gen, teacher, obs, **STUDENT_SOLVE, seed=lo)
                else:
                    xm, nfe[who] = solve_with_teacher(teacher, obs, **TEACHER_SOLVE[kind], seed=lo)
                wall[who] += time.perf_counter() - start
                xp = teacher.norm.to_physical(xm.detach().double())
                errs[who].append(relative_error(xp, x, part))
                if lo == 0:
                    examples[(kind, who)] = (x[:2], xp[:2], obs.mask[:2])
        for who, how in (("student", f"student prior ({STUDENT_SOLVE['iters']} latent steps)"),
                         ("teacher", f"guided teacher ({TEACHER_SOLVE[kind]['steps']} steps)")):
            e = torch.cat(errs[who])
            rows.append({"problem": kind, "solver": how, "instances": len(e), "error_mean": float(e.mean()),
                         "error_median": float(e.median()), "nfe": nfe[who], "backward_passes": nfe[who] - (
                             1 if who == "student" else 0), "ms_per_instance": 1000 * wall[who] / len(e)})
            print(f"  {kind} / {how}: error {rows[-1]['error_mean']:.3f}, {rows[-1]['ms_per_instance']:.0f} ms",
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
            truth, obs_mask = examples[(kind, "student")][0][i], examples[(kind, "student")][2][i]
            row = [(f"{names[0]} (solver)", truth[0].numpy()), (f"{names[1]} (solver)", truth[1].numpy()),
                   ("observed points", obs_mask[1].float().numpy())]
            for who in ("student", "teacher"):
                est = examples[(kind, who)][1][i]
                row += [(f"{names[c]} ({who})", est[c].numpy()), (f"error ({who})", (est[c] - truth[c]).abs().numpy())]
            rows.append(row)
        path = ROOT / "docs" / "img" / f"pde_{pde}_{kind}.png"
        plot_fields(rows, path, title=f"{pde}, {kind} problem ({100 * FRACTION:.0f}% of solution points observed)")
        paths.append(str(path.relative_to(ROOT)))
    return paths


def table(res: dict) -> str:
    lines = []
    for pde, r in res["pdes"].items():
        floor = r["floor"]
        lines += [f"### {pde}", "",
                  f"Floor (held-out solver data, {floor['n']} samples): relative residual {floor['float64']:.1e} in "
                  f"float64, {floor['float32']:.1e} in float32 (the precision samples are generated in). "
                  f"{r['n']} unconditional samples per row, fixed seed.", "",
                  "| sampler | NFE | relative residual (mean) | median | ms / sample | distill time |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for row in r["unconditional"]:
            d = r["distill"].get(row["sampler"], {}).get("distill_s")
            name = row["sampler"] if row["sampler"].startswith("teacher") else f"**{row['sampler']}**"
            lines.append(f"| {name} | {row['nfe']} | {row['residual_mean']:.3e} | {row['residual_median']:.3e} | "
                         f"{row['ms_per_sample']:.1f} | {'-' if d is None else f'{d:.0f} s'} |")
        lines += ["", f"Downstream problems over {r['downstream'][0]['instances']} held-out instances, "
                  f"{100 * FRACTION:.0f}% of solution points observed; relative L2 error of the unknown field "
                  "(forward: solution, inverse: coefficient channel).", "",
                  "| problem | solver | error (mean) | median | NFE | backward passes | ms / instance |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for row in r["downstream"]:
            lines.append(f"| {row['problem']} | {row['solver']} | {row['error_mean']:.3f} | {row['error_median']:.3f} "
                         f"| {row['nfe']} | {row['backward_passes']} | {row['ms_per_instance']:.0f} |")
        g = goals(r)
        lines += ["", f"Goals: guided 1-step student's residual {g['residual_ratio']:.1f}x below the teacher's best "
                  f"(goal >= 8x: {'met' if g['residual_ratio'] >= 8 else 'not met'}) with {g['nfe_ratio']:.0f}x fewer "
                  f"NFE (goal >= 50x: {'met' if g['nfe_ratio'] >= 50 else 'not met'}); forward error "
                  f"{g['forward_error_ratio']:.2f}x the guided teacher's (goal <= 1.5x: "
                  f"{'met' if g['forward_error_ratio'] <= 1.5 else 'not met'}) at {g['forward_time_ratio']:.3f} of its "
                  f"time (goal < 0.02: {'met' if g['forward_time_ratio'] < 0.02 else 'not met'}).", ""]
        lines += [f"![{p}]({Path(p).relative_to('docs')})" for p in r["plots"]] + [""]
    return "\n".join(lines)


def goals(r: dict) -> dict:
    teacher = [row for row in r["unconditional"] if row["sampler"].startswith("teacher")]
    floor = min(row["residual_mean"] for row in teacher)
    # the teacher's best: the cheapest step count within 1% of its lowest residual (more steps stop paying)
    best = min((row for row in teacher if row["residual_mean"] <= 1.01 * floor), key=lambda row: row["nfe"])
    guided = next(row for row in r["unconditional"] if row["sampler"] == PRIOR)
    fwd = {row["solver"].split(" ")[0]: row for row in r["downstream"] if row["problem"] == "forward"}
    return {"residual_ratio": best["residual_mean"] / guided["residual_mean"], "nfe_ratio": best["nfe"] / guided["nfe"],
            "forward_error_ratio": fwd["student"]["error_mean"] / fwd["guided"]["error_mean"],
            "forward_time_ratio": fwd["student"]["ms_per_instance"] / fwd["guided"]["ms_per_instance"]}


def main() -> None:
    from unidistill.modalities.pde.io import load_teacher
    from unidistill.modalities.pde.problems import relative_residual

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pdes", nargs="+", default=["darcy", "poisson"])
    ap.add_argument("--n", type=int, default=64, help="unconditional samples per row")
    ap.add_argument("--instances", type=int, default=100, help="held-out forward/inverse instances")
    ap.add_argument("--only", choices=["train", "measure"], help="only distil the students, or only measure")
    ap.add_argument("--retable", action="store_true", help="rewrite docs/results.md from the saved json")
    args = ap.parse_args()
    res = read_result("pde") or {"pdes": {}}
    if not args.retable:
        for pde in args.pdes:
            print(f"== {pde}", flush=True)
            dist = {label: distill(pde, label) for label in VARIANTS}
            if args.only == "train":
                continue
            teacher = load_teacher(pde)
            rng = np.random.default_rng(teacher.info.get("seed", 0) + 1)  # the dataset's held-out stream
            test = torch.from_numpy(teacher.pde.generate(args.instances, teacher.info["size"], rng))
            floor = {"n": len(test), "float64": float(relative_residual(teacher.pde, test).mean()),
                     "float32": float(relative_residual(teacher.pde, test.float()).mean())}
            r = {"n": args.n, "floor": floor, "distill": dist, "unconditional": unconditional(pde, teacher, args.n)}
            r["downstream"], examples = downstream(pde, teacher, test)
            r["plots"] = plot_examples(pde, teacher, examples)
            r["goals"] = goals(r)
            res["pdes"][pde] = r
            write_result("pde", res)
    if args.only != "train":
        replace_section("pde", table(res))


if __name__ == "__main__":
    main()
