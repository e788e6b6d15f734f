"""Image benchmark: one-step (and two-step) students of the shipped digits teachers, for every
method, next to the teachers' own ODE samplers at 1-79 network evaluations and the real-vs-real floor.

Students are trained from the shipped configs in examples/image/ through the CLI, so the benchmark
measures what users run. Every sampler is scored on the same 1000 samples per row (classes 0-9
cycling, fixed seed) with the shipped digits classifier: digits-FID against the 500 held-out real
digits, class accuracy, the unsure share (top-class probability below 0.5: digits bridging two classes),
improved precision / recall against the held-out digits in the classifier's features (Kynkaanniemi et al.
2019), and the mean log p(class | x) (the DI++ / DI* reward).

    python benchmarks/image.py [--jobs 2] [--methods sim,sid] [--teachers digits,digits_flow] [--retable]
    python benchmarks/image.py --rescore [--teachers digits,digits_flow]   # re-score rows, no training

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

from unidistill.engine.metrics import Estimate

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
    "sim 2000 steps cosine lr, unbounded Karras grid (before)": ("digits_sim", "score", True),
    "sim 4000 steps cosine lr, unbounded Karras grid (before)": ("digits_sim", "score", True),
    "sim 4000 steps cosine lr": ("digits_sim", "score", True),
    # levers of issue 19, each on top of its shipped config (docs/results.md, "what we tried")
    "sim, unbounded Karras grid (before)": ("digits_sim", "score", True),
    "sim with 2 fake updates per step": ("digits_sim", "score", True),
    "sim + adversarial (teacher samples)": ("digits_sim", "score", True),
    "sim + adversarial (teacher samples), fake_weight 1": ("digits_sim", "score", True),
    "uni released form + adversarial, fake_weight 1": ("digits_uni", "f-div", True),
    "sim + adversarial (data)": ("digits_sim", "score", False),
    "uni released form + adversarial": ("digits_uni", "f-div", True),
    "ikl + adversarial (teacher samples)": ("digits_ikl", "KL", True),
}
# digits_sim.yaml's time sampler before issue 19 (SiD's bounded draw replaced it: docs/results.md)
UNBOUNDED_KARRAS = ["distill.time_sampler.n_grid=64", "distill.time_sampler.u_max=1.0"]
OVERRIDES = {  # benchmark name -> config overrides (its run directory gets the name's own folder)
    "sim 2000 steps cosine lr, unbounded Karras grid (before)": ["train.steps=2000", "train.schedule=cosine",
                                                                "train.eval_every=1000", *UNBOUNDED_KARRAS],
    "sim 4000 steps cosine lr, unbounded Karras grid (before)": ["train.steps=4000", "train.schedule=cosine",
                                                                "train.eval_every=1000", *UNBOUNDED_KARRAS],
    "sim 4000 steps cosine lr": ["train.steps=4000", "train.schedule=cosine", "train.eval_every=1000"],
    "sim, unbounded Karras grid (before)": UNBOUNDED_KARRAS,
    "sim with 2 fake updates per step": ["train.aux_steps=2"],
    "sim + adversarial (teacher samples)": ["distill.adversarial.weight=0.01", "distill.real=teacher"],
    "sim + adversarial (data)": ["distill.adversarial.weight=0.01", "distill.real=data"],
    "uni released form + adversarial": ["distill.divergence.form=released", "distill.discriminator=null",
                                        "distill.adversarial.weight=0.01"],
    "ikl + adversarial (teacher samples)": ["distill.adversarial.weight=0.01", "distill.real=teacher"],
    # the first adversarial rows, measured before fake_weight's default became 0.01; the bounded Karras draw was
    # not yet digits_sim's default
    "sim + adversarial (teacher samples), fake_weight 1": ["distill.adversarial.weight=0.01",
                                                           "distill.adversarial.fake_weight=1.0",
                                                           "distill.real=teacher", *UNBOUNDED_KARRAS],
    "uni released form + adversarial, fake_weight 1": ["distill.divergence.form=released", "distill.discriminator=null",
                                                       "distill.adversarial.weight=0.01",
                                                       "distill.adversarial.fake_weight=1.0"],
}
FID_DRAWS = 5  # students: digits-FID over this many disjoint sample sets (seeds 1..FID_DRAWS), mean +- sd


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


def teacher_draws(result: dict, best: int = 3) -> dict:
    """FID over FID_DRAWS draws (seeds 1..FID_DRAWS) for the `best` teacher rows by their seed-0 digits-FID."""
    from unidistill.modalities.image.io import load_image_teacher
    from unidistill.modalities.shared.sampling import sample_teacher

    rows = sorted((r for r in result["teacher"] if "CFG" not in r["sampler"]), key=lambda r: r["digits_fid"])[:best]
    c = torch.arange(N_EVAL) % 10
    for r in rows:
        teacher = load_image_teacher(r["teacher"])
        method, steps = re.search(r"(euler|heun) (\d+) steps", r["sampler"]).groups()
        r["fid_draws"] = [score(sample_teacher(teacher.denoiser, N_EVAL, int(steps), c, method=method,
                                               generator=torch.Generator().manual_seed(s)), c)["digits_fid"]
                          for s in range(1, FID_DRAWS + 1)]
        print(r["sampler"], r["fid_draws"], flush=True)
    return result


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


def load_student(run: Path) -> tuple:
    """(EMA generator in eval mode, its teacher) of a benchmark run directory."""
    from unidistill.engine import checkpoint as ckpt
    from unidistill.engine.cli import load_run_config
    from unidistill.modalities.image.io import load_image_teacher

    cfg = load_run_config(run / "config.yaml").cfg
    tensors, _ = ckpt.load_latest(run / "checkpoints")
    teacher = load_image_teacher(cfg.teacher, cfg.guidance_scale, cfg.prompts)
    gen = load_run_config(run / "config.yaml").backend.sampler(cfg, run).generator
    gen.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    return gen.eval(), teacher


def draw(gen, teacher, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n student samples and their classes (cycling), fixed seed."""
    from unidistill.modalities.shared.student import draw_student

    return draw_student(gen, n, teacher.shape, teacher.denoiser.num_conds, seed=seed)


def student_extras(row: dict) -> dict:
    """Reward value, sampling time against the teacher's 35-NFE Heun sampler (alternated), sample grid."""
    from unidistill.modalities.shared.sampling import sample_teacher

    run = RUNS / row.get("run", row["config"])
    gen, teacher = load_student(run)
    row.update(score(*draw(gen, teacher, N_EVAL)))
    fids = [score(*draw(gen, teacher, N_EVAL, seed=s))["digits_fid"] for s in range(1, FID_DRAWS + 1)]
    row["fid_draws"] = fids
    t_student, t_teacher = [], []
    for r in range(3):  # alternate A and B on the same noisy machine
        t0 = time.perf_counter()
        draw(gen, teacher, 500, seed=r)
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
    p.add_argument("--teacher-draws", action="store_true",
                   help="add digits-FID over FID_DRAWS draws to the three best teacher rows of image.json")
    p.add_argument("--rescore", action="store_true",
                   help="score again, without training: the floor, the --teachers' ODE rows and every student "
                        "whose run is still under runs/bench_image; then rewrite image.json and the table")
    args = p.parse_args()
    old = read_result("image")
    if args.retable:
        replace_section("image", table(old))
        return
    if args.teacher_draws:
        torch.set_num_threads(1)
        result = teacher_draws({k: v for k, v in old.items() if k != "machine"})
        write_result("image", result)
        replace_section("image", table(result))
        return
    if args.rescore:
        torch.set_num_threads(1)
        result = rescore(old, [t for t in args.teachers.split(",") if t])
        write_result("image", result)
        replace_section("image", table(result))
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


def rescore(old: dict, teachers: list[str]) -> dict:
    """old with every score measured again by the current evaluator (same samples: fixed seeds): the floor, the
    ODE rows of the listed teachers and the students whose run directory keeps its checkpoints. Timings and
    training figures are kept; students without a run keep their rows as they are (missing keys print "-")."""
    from unidistill.modalities.shared.digits_eval import real_floor

    timing = {r["sampler"]: r["ms_per_image"] for r in old.get("teacher", [])}
    fresh = [{**r, "ms_per_image": timing.get(r["sampler"], r["ms_per_image"])} for r in teacher_rows(teachers)]
    rows = [r for r in old.get("teacher", []) if r["teacher"] not in teachers] + fresh
    students = {}
    for name, row in old.get("students", {}).items():
        run = RUNS / row.get("run", row.get("config", ""))
        if "error" not in row and (run / "checkpoints").is_dir():
            gen, teacher = load_student(run)
            row = {**row, **score(*draw(gen, teacher, N_EVAL))}
        else:
            print(f"{name}: no run at {run}, row kept as it is", flush=True)
        students[name] = row
    kept = {k: v for k, v in old.items() if k != "machine"}  # write_result records this machine
    return {**kept, "floor": real_floor(), "teacher": rows, "students": students}


def merged(result: dict, teachers: list[str]) -> dict:
    """Our rows over what is on disk now (another invocation may have added rows meanwhile)."""
    disk = read_result("image")
    rows = [r for r in disk.get("teacher", []) if r["teacher"] not in teachers]
    rows += [r for r in result["teacher"] if r["teacher"] in teachers]
    return {**result, "teacher": rows, "students": {**disk.get("students", {}), **result["students"]}}


def cell(row: dict, key: str, spec: str = ".3f") -> str:
    """row[key] formatted, or "-" for a row measured before the key existed."""
    return "-" if row.get(key) is None else format(row[key], spec)


def pr_cell(row: dict, suffix: str = "") -> str:
    """"precision / recall" of a row (keys precision<suffix>, recall<suffix>), "-" when it has neither."""
    p, r = cell(row, "precision" + suffix), cell(row, "recall" + suffix)
    return "-" if p == r == "-" else f"{p} / {r}"


def fid_estimate(row: dict) -> Estimate | None:
    """digits-FID over the row's draws, None when it has none."""
    return Estimate.of(row["fid_draws"]) if row.get("fid_draws") else None


def fid_cell(row: dict) -> str:
    """digits-FID mean +- sd over the row's draws, "-" when it has none."""
    e = fid_estimate(row)
    return "-" if e is None else f"{e:.2f}"


def draws_summary(teachers: list[dict], students: dict) -> list[str]:
    """The same comparison on the mean over FID_DRAWS draws, for the rows that have them: a student is at or below
    the teacher only when its mean is, and better only beyond 2 standard errors of the difference."""
    t = [r for r in teachers if r.get("fid_draws")]
    s = {k: v for k, v in students.items() if v.get("fid_draws")}
    if not t or not s:
        return []
    bt = min(t, key=lambda r: fid_estimate(r).mean)
    bs = min(s, key=lambda k: fid_estimate(s[k]).mean)
    et, es = fid_estimate(bt), fid_estimate(s[bs])
    verdict = "lower" if es.lower_than(et) else "higher" if et.lower_than(es) else "not distinguishable"
    return [f"Over {FID_DRAWS} draws: best teacher {bt['sampler']} {fid_cell(bt)}; best one-step student {bs} "
            f"{fid_cell(s[bs])}, {es.mean / et.mean:.2f}x the teacher's ({verdict} at 2 standard errors; goal at "
            f"most 1x: {'met' if es.mean <= et.mean else 'not met'})."]


def table(result: dict) -> str:
    from unidistill.modalities.shared.digits_eval import PR_K, UNSURE_BELOW

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
        f"Unsure: share of samples whose top-class probability under the classifier is below {UNSURE_BELOW:g} "
        f"(digits between classes); held-out digits: {cell(f, 'held_out_unsure')}. Precision / recall: improved "
        f"precision and recall (Kynkaanniemi et al. 2019, k = {PR_K}) in the same features against the 500 "
        f"held-out digits: the share of samples inside the real digits' k-NN balls / of held-out digits inside the "
        f"samples' balls; 1,297 training digits against the held-out: {pr_cell(f, '_train_vs_held_out')}. "
        f"FID over {FID_DRAWS} draws: digits-FID of {FID_DRAWS} further sets of {result['n_eval']} samples "
        "(seeds 1-5), mean ± sd, measured for the rows trained in this round. \"-\": not measured for the row.",
        "",
        "| sampler | NFE | digits-FID | FID over draws | class acc. | unsure | precision / recall | log p "
        "| ms / image | distill s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in teachers:
        lines.append(f"| {r['sampler']} | {r['nfe']} | {r['digits_fid']:.2f} | {fid_cell(r)} "
                     f"| {r['class_accuracy']:.3f} | "
                     f"{cell(r, 'unsure')} | {pr_cell(r)} | {r['log_p_class']:.3f} | {r['ms_per_image']:.2f} | - |")
    for name, r in result["students"].items():
        if "error" in r:
            lines.append(f"| {name} | - | failed: {r['error']} | | | | | | | |")
            continue
        free = "" if r["data_free"] else " (uses real data)"
        lines.append(f"| **{name}**{free} | {r['nfe']} | {r['digits_fid']:.2f} | {fid_cell(r)} "
                     f"| {r['class_accuracy']:.3f} | "
                     f"{cell(r, 'unsure')} | {pr_cell(r)} | "
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
                             f"(goal at most 1.2x: {'met' if r <= 1.2 else 'not met'}).")
    lines += draws_summary(teachers, one)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
