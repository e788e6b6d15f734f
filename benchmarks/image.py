"""Image benchmark: one-step (and two-step) students of the shipped digits teachers, for every
method, next to the teachers' own ODE samplers at 1-79 network evaluations and the real-vs-real floor.

Students are trained from the shipped configs in examples/image/ through the CLI, so the benchmark
measures what users run. Every sampler is scored on the same 1000 samples per row (classes 0-9
cycling, fixed seed) with the shipped digits classifier: digits-FID against the 500 held-out real
digits, class accuracy, and the mean log p(class | x) (the DI++ / DI* reward).

    python benchmarks/image.py [--jobs 2] [--methods sim,sid] [--teachers digits,digits_flow] [--retable]

Writes benchmarks/results/image.json, docs/img/image_*.png and the image section of docs/results.md.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import read_result, replace_section, write_result

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "image"
RUNS = ROOT / "runs" / "bench_image"
IMG = ROOT / "docs" / "img"
N_EVAL = 1000
# Euler at these NFE; Heun at 2n - 1 NFE for these n (18 and 40 steps are EDM's 35 and 79 NFE)
EULER_NFE = [1, 2, 4, 8, 16, 35, 79]
HEUN_STEPS = [2, 4, 8, 18, 40]
METHODS = {  # benchmark name -> (shipped config, family, data-free)
    "ikl (Diff-Instruct)": ("digits_ikl", "KL", True),
    "dmd": ("digits_dmd", "KL", True),
    "sid": ("digits_sid", "score", True),
    "sim": ("digits_sim", "score", True),
    "fdiv js": ("digits_fdiv_js", "f-div", True),
    "fdiv fkl (real data)": ("digits_fdiv_fkl_data", "f-div", False),
    "uni fkl": ("digits_uni", "f-div", True),
    "fgm (flow teacher)": ("digits_fgm", "score", True),
    "di++ (ikl + reward)": ("digits_dipp", "KL + reward", True),
    "di* (sim + reward)": ("digits_distar", "score + reward", True),
    "sim 2-step": ("digits_sim_2step", "score", True),
    "sim cfg w=2": ("digits_sim_cfg2", "score", True),
    "sim 2000 steps cosine lr": ("digits_sim", "score", True),
    "sim 4000 steps cosine lr": ("digits_sim", "score", True),
}
OVERRIDES = {  # benchmark name -> config overrides (its run directory gets the name's own folder)
    "sim 2000 steps cosine lr": ["train.steps=2000", "train.schedule=cosine", "train.eval_every=1000"],
    "sim 4000 steps cosine lr": ["train.steps=4000", "train.schedule=cosine", "train.eval_every=1000"],
}


def score(x: torch.Tensor, c: torch.Tensor) -> dict:
    from unidistill.modalities.shared.digits_eval import shipped_evaluator

    ev = shipped_evaluator()
    out = ev(x, c)
    with torch.no_grad():
        out["log_p_class"] = float(ev.classifier.log_prob(x.clamp(-1, 1), c).mean())
    return out


def teacher_rows(names: list[str]) -> list[dict]:
    from unidistill.engine.sampling import ode_nfe
    from unidistill.modalities.image.io import load_image_teacher
    from unidistill.modalities.shared.sampling import sample_teacher

    rows = []
    for name in names:
        teacher = load_image_teacher(name)
        c = torch.arange(N_EVAL) % 10
        runs = [("euler", n, 1.0) for n in EULER_NFE] + [("heun", n, 1.0) for n in HEUN_STEPS]
        if name == "digits":
            runs.append(("heun", 18, 2.0))  # the guided teacher distilled by digits_sim_cfg2.yaml
        for method, steps, w in runs:
            t0 = time.perf_counter()
            x = sample_teacher(teacher.denoiser, N_EVAL, steps, c, method=method, guidance_scale=w,
                               generator=torch.Generator().manual_seed(0))
            dt = time.perf_counter() - t0
            cfg = "" if w == 1.0 else f", CFG w={w:g}"
            rows.append({"sampler": f"teacher {name}, {method} {steps} steps{cfg}", "teacher": name,
                         "nfe": ode_nfe(steps, method) * (1 if w == 1.0 else 2), "ms_per_image": 1e3 * dt / N_EVAL,
                         **score(x, c)})
            print(rows[-1], flush=True)
    return rows


def student_job(args: tuple) -> dict:
    name, config, threads = args
    torch.set_num_threads(threads)
    from unidistill.engine.cli import main

    run = run_name(name)
    out = RUNS / run
    sets = [a for o in ["train.progress=false", *OVERRIDES.get(name, [])] for a in ("--set", o)]
    t0 = time.perf_counter()
    code = main(["distill", str(EXAMPLES / f"{config}.yaml"), "--out", str(out), *sets])
    wall = time.perf_counter() - t0
    if code != 0:
        return {"sampler": name, "error": f"exit code {code}"}
    metrics = json.loads((out / "metrics.json").read_text())
    return {"sampler": name, "config": config, "run": run, "distill_s": wall, **metrics}


def run_name(name: str) -> str:
    config = METHODS[name][0]
    return config if name not in OVERRIDES else re.sub(r"\W+", "_", name).strip("_")


def student_extras(row: dict) -> dict:
    """Reward value, sampling time against the teacher's 35-NFE Heun sampler (alternated), sample grid."""
    from unidistill.engine import checkpoint as ckpt
    from unidistill.engine.cli import load_run_config
    from unidistill.modalities.image.io import load_image_teacher
    from unidistill.modalities.shared.sampling import sample_teacher
    from unidistill.modalities.shared.student import draw_student

    run = RUNS / row.get("run", row["config"])
    cfg = load_run_config(run / "config.yaml").cfg
    tensors, _ = ckpt.load_latest(run / "checkpoints")
    teacher = load_image_teacher(cfg.teacher, cfg.guidance_scale, cfg.prompts)
    gen = load_run_config(run / "config.yaml").backend.sampler(cfg, run).generator
    gen.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    gen.eval()

    def draw(g, n, seed=0):
        return draw_student(g, n, teacher.shape, teacher.denoiser.num_conds, seed=seed)

    x, c = draw(gen, N_EVAL)
    row.update(score(x, c))
    t_student, t_teacher = [], []
    for r in range(3):  # alternate A and B on the same noisy machine
        t0 = time.perf_counter()
        draw(gen, 500, seed=r)
        t_student.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with torch.no_grad():
            sample_teacher(teacher.denoiser, 500, 18, torch.arange(500) % 10,
                           generator=torch.Generator().manual_seed(r))
        t_teacher.append(time.perf_counter() - t0)
    row["ms_per_image"] = 1e3 * min(t_student) / 500
    row["teacher35_ms_per_image"] = 1e3 * min(t_teacher) / 500
    row["nfe"] = gen.n_steps
    pics = sorted((run / "samples").glob("step_*.png"))
    if pics:
        IMG.mkdir(parents=True, exist_ok=True)
        shutil.copy(pics[-1], IMG / f"image_{row.get('run', row['config'])}.png")
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--methods", help="comma-separated benchmark names (default: all)")
    p.add_argument("--teachers", default="digits,digits_flow",
                   help="teachers whose ODE rows to (re)measure; others are kept from image.json ('' for none)")
    p.add_argument("--retable", action="store_true", help="only rewrite docs/results.md from image.json")
    args = p.parse_args()
    old = read_result("image")
    if args.retable:
        replace_section("image", table(old))
        return
    from unidistill.modalities.shared.digits_eval import real_floor

    torch.set_num_threads(max(1, 2 // args.jobs))
    names = [n for n in args.methods.split(",") if n] if args.methods is not None else list(METHODS)
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        sys.exit(f"unknown methods {unknown}; choose from {list(METHODS)}")
    teachers = [t for t in args.teachers.split(",") if t]
    kept = [r for r in old.get("teacher", []) if r["teacher"] not in teachers]
    result = {"floor": real_floor(), "n_eval": N_EVAL, "teacher": kept + teacher_rows(teachers),
              "students": {k: v for k, v in old.get("students", {}).items() if k not in names}}
    # spawn, not fork: a child forked after the parent's OpenMP pool started can hang on its first op
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for row in pool.map(student_job, [(n, METHODS[n][0], max(1, 2 // args.jobs)) for n in names]):
            if "error" not in row:
                row = student_extras(row)
            name = row["sampler"]
            row["family"], row["data_free"] = METHODS[name][1], METHODS[name][2]
            result["students"][name] = row
            print(name, {k: row.get(k) for k in ("digits_fid", "class_accuracy", "distill_s")}, flush=True)
            result = merged(result, teachers)
            write_result("image", result)
    result = merged(result, teachers)
    write_result("image", result)
    replace_section("image", table(result))


def merged(result: dict, teachers: list[str]) -> dict:
    """Our rows over what is on disk now (another invocation may have added rows meanwhile)."""
    disk = read_result("image")
    rows = [r for r in disk.get("teacher", []) if r["teacher"] not in teachers]
    rows += [r for r in result["teacher"] if r["teacher"] in teachers]
    return {**result, "teacher": rows, "students": {**disk.get("students", {}), **result["students"]}}


def table(result: dict) -> str:
    f = result["floor"]
    teachers = result["teacher"]
    best = min(teachers, key=lambda r: r["digits_fid"])
    lines = [
        f"Digits-FID: Frechet distance on the shipped classifier's 128-d penultimate features against the "
        f"500 held-out digits, {result['n_eval']} samples per row (classes cycling, fixed seed). "
        f"Real-vs-real floor: {f['fid_train_vs_held_out']:.2f} (1,297 training digits), "
        f"{f['fid_train500_vs_held_out']:.2f} (500 of them); classifier accuracy on held-out digits "
        f"{f['held_out_accuracy']:.3f}. log p = mean log p(class | x), the DI++/DI* reward.",
        "",
        "| sampler | NFE | digits-FID | class acc. | log p | ms / image | distill s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in teachers:
        lines.append(f"| {r['sampler']} | {r['nfe']} | {r['digits_fid']:.2f} | {r['class_accuracy']:.3f} | "
                     f"{r['log_p_class']:.3f} | {r['ms_per_image']:.2f} | - |")
    for name, r in result["students"].items():
        if "error" in r:
            lines.append(f"| {name} | - | failed: {r['error']} | | | | |")
            continue
        free = "" if r["data_free"] else " (uses real data)"
        lines.append(f"| **{name}**{free} | {r['nfe']} | {r['digits_fid']:.2f} | {r['class_accuracy']:.3f} | "
                     f"{r['log_p_class']:.3f} | {r['ms_per_image']:.3f} (teacher 35 NFE: "
                     f"{r['teacher35_ms_per_image']:.2f}) | {r['distill_s']:.0f} |")
    lines += ["", f"Best teacher sampler: {best['sampler']} (digits-FID {best['digits_fid']:.2f}, {best['nfe']} NFE)."]
    one = {k: v for k, v in result["students"].items() if "error" not in v and v.get("nfe") == 1}
    if one:
        top = min(one, key=lambda k: one[k]["digits_fid"])
        ratio = one[top]["digits_fid"] / best["digits_fid"]
        met = "met" if ratio <= 1 else "not met"
        lines.append(f"Best one-step student: {top} (digits-FID {one[top]['digits_fid']:.2f}, {ratio:.2f}x the best "
                     f"teacher's; goal at most 1x: {met}).")
        for fam in ("score", "KL"):
            cands = {k: v for k, v in one.items() if v.get("family") == fam}
            if cands:
                k = min(cands, key=lambda k: cands[k]["digits_fid"])
                r = cands[k]["digits_fid"] / best["digits_fid"]
                lines.append(f"Best {fam}-family one-step student: {k}, {r:.2f}x the best teacher's "
                             f"(goal at most 1.5x: {'met' if r <= 1.5 else 'not met'}).")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
