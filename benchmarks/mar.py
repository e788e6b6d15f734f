"""MAR on the digits: the shipped teacher against MARVAL one-step heads, the DD-style baseline and MARVAL-RL, with
the wall time split between transformer and head, and the exact kernel-mixture teacher as the reference.

Sections (each writes its part of benchmarks/results/mar.json; the table in docs/results.md is rebuilt from it):

    python benchmarks/mar.py --only teacher    # the teacher at T = 100/50/25/10 head steps x K = 4/8/16, guidance
    python benchmarks/mar.py --only students   # trains MARVAL, DD, MARVAL-RL (examples/mar/) and evaluates them
    python benchmarks/mar.py --only exact      # one-step heads on the exact teacher, per context, at CFG 1, 2, 3
    python benchmarks/mar.py --only timing     # teacher's best setting vs MARVAL, alternately, batch 1000 and 1
    python benchmarks/mar.py --only levers     # MARVAL's settings tried, 300 steps each (K = 8)
    python benchmarks/mar.py --retable         # docs/results.md from the saved json

All figures use 1000 samples (100 per class) and seed 0; times are wall seconds on this machine's CPU threads.
K = 64 of the issue is impossible here: 2x2 patches of 8x8 digits give 16 tokens, so K <= 16.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import read_result, replace_section, write_result  # noqa: E402

from unidistill.engine import checkpoint as ckpt  # noqa: E402
from unidistill.engine.cli import _load_weights, load_run_config  # noqa: E402
from unidistill.engine.metrics import energy_distance  # noqa: E402
from unidistill.modalities.mar.evaluate import balanced_labels, image_metrics, timed  # noqa: E402
from unidistill.modalities.mar.model import Cond, load_mar  # noqa: E402
from unidistill.modalities.mar.sampler import gather_tokens, sample_mar, unmask  # noqa: E402
from unidistill.modalities.mar.schedule import random_orders  # noqa: E402

EXAMPLES = ROOT / "examples" / "mar"
RUNS = ROOT / "runs" / "bench_mar"
N = 1000
HEAD_STEPS = (100, 50, 25, 10)
ITERS = (4, 8, 16)
STUDENT_ITERS = (1, 2, 4, 8, 16)  # one-step students: K = 1 and 2 as well, where the transformer's passes are fewest
TIMED_ITERS = (2, 4, 8)  # MARVAL's K in the end-to-end timing
GUIDANCE = (1.0, 1.5)  # the teacher's grid; its FID is flat from 1 to 1.5 and rises above (2.0: 1.85, 3.0: 2.04)
UNI = str(Path(sys.executable).parent / "unidistill")
SIGMA4 = "distill.divergence={name: sim, c: 1.0, weighting: sigma4}"
LEVERS = [("SIM, sigma4 weighting", [SIGMA4]),
          ("SIM, sigma4 weighting, lr 3e-4", [SIGMA4, "train.lr={generator: 3.0e-4, fake: 3.0e-4}"]),
          ("SIM, sid weighting (shipped example)", []),
          ("SiD (alpha 1.2, sid weighting)", ["distill.divergence={name: sid}"])]
LEVER_STEPS = 300
DIPP = "distill.alignment={name: dipp}"
RL_LEVERS = [("reward alone (dipp), alpha 0.01, 150 steps", [DIPP, "distill.reward={name: classifier, alpha: 0.01}"]),
             ("reward alone, lr 1e-5", [DIPP, "distill.reward={name: classifier, alpha: 0.01}",
                                        "train.lr={generator: 1.0e-5}"]),
             ("reward alone, 50 steps", [DIPP, "distill.reward={name: classifier, alpha: 0.01}", "train.steps=50"]),
             ("Reward-Instruct anchor, weight 10", ["distill.alignment={name: reward_instruct, weight: 10.0}"]),
             ("Reward-Instruct anchor, weight 1 (shipped example)", [])]
# (label, example, overrides, start from): trained in this order, one at a time
STUDENTS = [("MARVAL (GSIM, 1 head step)", "marval", [], None),
            ("DD-style baseline (1 head step)", "dd", [], None),
            ("MARVAL-RL (from MARVAL)", "marval_rl", [], "marval")]


def teacher_row(model, iters: int, steps: int, guidance: float, temperature: float = 1.0) -> dict:
    labels = balanced_labels(N)
    g = torch.Generator().manual_seed(0)
    tokens, timing = timed(lambda w: sample_mar(model, labels, iters, steps, guidance, "linear", temperature,
                                                generator=g, watch=w), N)
    return {"iters": iters, "steps": steps, "guidance": guidance, **image_metrics(tokens, labels, model.patch),
            **timing}


def exact_rows(model, s0: float) -> list[dict]:
    """The exact teacher's own samplers: the joint (an example of the class plus s0 noise) and the K-step sampler
    that draws each iteration's tokens independently from their exact conditionals."""
    from unidistill.modalities.mar.exact import KernelMixture
    from unidistill.modalities.mar.teach import digits_tokens

    exact = KernelMixture(*digits_tokens(model.patch), s0, model.process)
    labels = balanced_labels(N)
    g = torch.Generator().manual_seed(0)
    rows = [{"iters": "joint", **image_metrics(exact.joint(labels, g), labels, model.patch)}]
    for k in ITERS:
        order = random_orders(N, model.length, g)

        def predict(tokens, visible, idx, _k):
            seen = visible[:, None, :].expand(-1, model.length, -1)
            cond = Cond(None, None, torch.ones(N, model.length), tokens, seen, labels)
            return gather_tokens(exact.sample(cond, g), idx)

        start = time.perf_counter()
        tokens = unmask(order, k, model.token_dim, predict)
        rows.append({"iters": k, **image_metrics(tokens, labels, model.patch),
                     "seconds_per_image": (time.perf_counter() - start) / N})
    return rows


def train(example: str, out: Path, extra: list[str]) -> float:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [UNI, "distill", str(EXAMPLES / f"{example}.yaml"), "--out", str(out)]
    for s in ["train.threads=2", "train.progress=false", *extra]:
        cmd += ["--set", s]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def load_student(run: Path):
    from unidistill.modalities.mar.io import sampler

    cfg = load_run_config(run / "config.yaml")
    tensors, _ = ckpt.load_latest(run / "checkpoints", resumable=False)
    gen = sampler(cfg.cfg).generator
    _load_weights(gen, tensors, "ema.", "generator")
    return gen.eval().requires_grad_(False), cfg.cfg


def student_row(gen, iters: int, patch: int) -> dict:
    from unidistill.modalities.mar.distill import class_log_prob
    from unidistill.modalities.mar.io import draw_student

    labels = balanced_labels(N)
    with torch.no_grad():
        tokens, timing = timed(lambda w: draw_student(gen, labels, iters, 0, w), N)
        reward = class_log_prob(tokens, labels).mean().item()
    return {"iters": iters, **image_metrics(tokens, labels, patch), "classifier_log_prob": reward, **timing}


def token_mixture(exact, cond: Cond, i: int, conditional: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(means (N, d), log-weights (N,)) of token i's exact conditional mixture, the same for every draw."""
    logw = exact.log_weights(Cond(None, None, cond.scale[:1], cond.tokens[:1], cond.visible[:1], cond.labels[:1]),
                             conditional)[0, i]
    keep = logw >= logw.max() - 40  # components below e^-40 of the largest change nothing in float32
    return exact.data[keep, i], logw[keep]


def exact_draws(exact, model, cond: Cond, i: int, g, draws: int) -> torch.Tensor:
    """Draws of token i from its exact conditional (guidance 1), or by a CHAIN-step reverse chain on the exact guided
    score D_null + w (D - D_null) (guidance > 1: the guided density has no sampler of its own)."""
    from unidistill.modalities.mar.sampler import reverse_chain
    from unidistill.modalities.shared import mixture

    w = float(cond.scale[0, i])
    means, logw = token_mixture(exact, cond, i, True)
    if w == 1.0:
        u = torch.rand(draws, generator=g)
        eps = torch.randn(draws, model.token_dim, generator=g)
        return mixture.sample(means.expand(draws, -1, -1), logw.expand(draws, -1), exact.s0, u, eps)
    means_u, logw_u = token_mixture(exact, cond, i, False)
    s0, process = exact.s0, model.process

    def eps_fn(xt, tt):
        a, b = process.alpha(tt), process.sigma(tt)
        d_c = mixture.denoise(xt, means.expand(draws, -1, -1), logw.expand(draws, -1), a, b, s0)
        d_u = mixture.denoise(xt, means_u.expand(draws, -1, -1), logw_u.expand(draws, -1), a, b, s0)
        d = d_u + w * (d_c - d_u)
        return (xt - a[:, None] * d) / b[:, None]

    return reverse_chain(eps_fn, torch.randn(draws, model.token_dim, generator=g), process, CHAIN, generator=g)


def shares(samples: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """Share of samples nearest to each distinct mixture component (identical patches, such as blank ones, merged)."""
    distinct = torch.unique(members, dim=0)
    near = torch.cdist(samples, distinct).argmin(1)
    return torch.bincount(near, minlength=len(distinct)).float() / len(samples)


VISIBLE = 2  # visible tokens of a per-context check: the state after K = 8's second iteration
CHAIN = 100  # reverse-chain steps of the exact guided reference draws


def per_context(gen, cfg, model, contexts: int = 8, draws: int = 1000) -> dict:
    """For fixed contexts (a held-out digit with VISIBLE of its 16 tokens visible, one masked token to predict): the
    student's one-step draws against exact draws of the (guided) conditional: energy distance next to the floor
    (two independent exact draws), and the total-variation distance between the shares of the distinct mixture
    components (nearest class member) of the student's draws and of exact draws, next to two exact draws'. The
    students are trained with a constant guidance schedule, so every context is guided at w. With many visible
    tokens the exact conditional is one training digit's patch (its weights are one-hot: a held-out context is
    nearest one training digit by far), a nearest-neighbour map no head on the learned transformer's summary
    reproduces; with two visible tokens it is a mixture over many digits, the case the check is about."""
    from unidistill.modalities.mar.exact import KernelMixture
    from unidistill.modalities.mar.teach import digits_tokens

    t = cfg.teacher
    if t.guidance != 1.0 and t.cfg_schedule != "constant":
        raise ValueError("per-context checks need a constant guidance schedule (teacher.cfg_schedule=constant)")
    exact = KernelMixture(*digits_tokens(model.patch), t.s0, model.process)
    held, held_y = digits_tokens(model.patch, "held_out")
    g = torch.Generator().manual_seed(0)
    out = {"energy": [], "energy_floor": [], "tv": [], "tv_floor": []}
    for c in range(contexts):
        x, y = held[c:c + 1], held_y[c:c + 1]
        order = random_orders(1, model.length, g)
        i = int(order[0, VISIBLE])  # the token to predict; the first VISIBLE of the order are visible
        seen = torch.zeros(1, model.length, dtype=torch.bool)
        seen[:, order[0, :VISIBLE]] = True
        cond = Cond(None, None, torch.full((1, model.length), float(t.guidance)), x, seen[:, None, :].expand(
            -1, model.length, -1), y)
        with torch.no_grad():
            z = gen.transformer(x, seen, y, drop=torch.zeros(1, dtype=torch.bool))[:, i]
            student = gen.head_map(torch.randn(draws, model.token_dim, generator=g), z.expand(draws, -1))
            ref, ref2 = (exact_draws(exact, model, cond, i, g, draws) for _ in range(2))
        members = exact.data[exact.labels == y[0]][:, i]  # (N_y, d): the class's components of token i
        out["energy"].append(energy_distance(student, ref))
        out["energy_floor"].append(energy_distance(ref2, ref))
        out["tv"].append(0.5 * (shares(student, members) - shares(ref, members)).abs().sum().item())
        out["tv_floor"].append(0.5 * (shares(ref2, members) - shares(ref, members)).abs().sum().item())
    return {k: statistics.mean(v) for k, v in out.items()}


def table(r: dict) -> str:
    lines = []
    t = r.get("teacher")
    if t:
        lines += [f"Teacher (`modalities/mar/weights/digits_mar`), guidance w on MAR's linear schedule, {N} samples in "
                  f"one batch; {N} training digits score {t['floor']:.2f} against the held-out ones (the floor).", "",
                  "| w | K | T | digits-FID | class acc. | s / image | transformer s | head s | transformer NFE | "
                  "head NFE / image |", "|---|---|---|---|---|---|---|---|---|---|"]
        for row in t["rows"]:
            lines.append(f"| {row['guidance']:g} | {row['iters']} | {row['steps']} | {row['digits_fid']:.2f} | "
                         f"{row['class_accuracy']:.3f} | "
                         f"{row['seconds_per_image'] * 1e3:.2f} ms | {row['transformer_s_per_image'] * 1e3:.2f} ms | "
                         f"{row['head_s_per_image'] * 1e3:.2f} ms | {row['transformer_nfe']} | "
                         f"{row['head_nfe']:.0f} |")
        lines += ["", "Exact kernel-mixture teacher's samplers (s0 = " + str(t["s0"]) + "):", "",
                  "| sampler | digits-FID | class acc. |", "|---|---|---|"]
        for row in t["exact"]:
            name = "joint (a digit plus s0 noise)" if row["iters"] == "joint" else f"K = {row['iters']} iterations"
            lines.append(f"| {name} | {row['digits_fid']:.2f} | {row['class_accuracy']:.3f} |")
    s = r.get("students")
    if s:
        lines += ["", "| student | K | digits-FID | class acc. | log p(class) | s / image | transformer NFE | "
                  "head NFE / image | training |", "|---|---|---|---|---|---|---|---|---|"]
        for st in s:
            for row in st["rows"]:
                lines.append(f"| {st['label']} | {row['iters']} | {row['digits_fid']:.2f} | "
                             f"{row['class_accuracy']:.3f} | {row['classifier_log_prob']:.3f} | "
                             f"{row['seconds_per_image'] * 1e3:.2f} ms | {row['transformer_nfe']} | "
                             f"{row['head_nfe']:.0f} | {st['steps']} steps, {st['train_seconds'] / 60:.1f} min |")
    tm = r.get("timing")
    if tm:
        t = tm["teacher"]
        ks = tm["student_iters"]
        lines += ["", f"End-to-end seconds per image, measured alternately ({tm['repeats']} rounds, median): the "
                  f"teacher at its best setting (w = {t['guidance']:g}, K = {t['iters']}, T = {t['steps']}: digits-FID "
                  f"{t['digits_fid']:.2f}) against MARVAL; batch 1 is 20 images drawn one at a time.", "",
                  "| batch | teacher | " + " | ".join(f"MARVAL K = {k} (speed-up)" for k in ks) + " |",
                  "|---|---|" + "---|" * len(ks)]
        for row in tm["rows"]:
            cells = [f"{row[str(k)] * 1e3:.2f} ms ({row['teacher'] / row[str(k)]:.1f}x)" for k in ks]
            lines.append(f"| {row['batch']} | {row['teacher'] * 1e3:.2f} ms | " + " | ".join(cells) + " |")
    lv = r.get("levers")
    if lv:
        lines += ["", f"MARVAL settings tried ({LEVER_STEPS} steps each, batch 32, K = 8, guidance 1.5 on the linear "
                  "schedule, the teacher's head at sigma/alpha 2.5 as the start; the start itself scores "
                  f"{lv['start']['digits_fid']:.2f}):", "", "| setting | digits-FID | class acc. |", "|---|---|---|"]
        for row in lv["rows"]:
            lines.append(f"| {row['label']} | {row['digits_fid']:.2f} | {row['class_accuracy']:.3f} |")
        lines += ["", "MARVAL-RL settings tried from the MARVAL student (K = 8 at training and evaluation; before RL: "
                  "the MARVAL row at K = 8 above), 150 steps unless stated:", "",
                  "| setting | digits-FID | log p(class) |", "|---|---|---|"]
        for row in lv.get("rl", []):
            lines.append(f"| {row['label']} | {row['digits_fid']:.2f} | {row['classifier_log_prob']:.4f} |")
    e = r.get("exact")
    if e:
        lines += ["", "One-step heads distilled from the exact teacher (constant guidance w), per context (8 held-out "
                  f"contexts with {VISIBLE} of 16 tokens visible, 1000 draws of one masked token): energy distance to "
                  "exact "
                  "draws and the total-variation distance between the shares of the distinct mixture components "
                  "(nearest class member) of the head's and of exact draws, each next to two exact draws' own.", "",
                  "| CFG | energy | energy floor | component TV | TV of exact draws |", "|---|---|---|---|---|"]
        for row in e:
            lines.append(f"| {row['guidance']} | {row['energy']:.4f} | {row['energy_floor']:.4f} | {row['tv']:.3f} | "
                         f"{row['tv_floor']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=["teacher", "students", "exact", "timing", "levers"], action="append")
    p.add_argument("--retable", action="store_true")
    p.add_argument("--reuse", action="store_true", help="students, exact: evaluate runs already trained under "
                   "runs/bench_mar instead of training them again")
    args = p.parse_args()
    torch.set_num_threads(2)
    r = read_result("mar")
    r.pop("machine", None)
    parts = args.only or ([] if args.retable else ["teacher", "levers", "students", "exact", "timing"])
    model, _ = load_mar("shipped")
    if "teacher" in parts:
        from unidistill.modalities.shared.digits_eval import real_floor

        rows = []
        for w in GUIDANCE:
            for k in ITERS:
                for t in HEAD_STEPS:
                    rows.append(teacher_row(model, k, t, w))
                    print(rows[-1], flush=True)
        r["teacher"] = {"rows": rows, "s0": 0.15, "exact": exact_rows(model, 0.15),
                        "floor": real_floor(N)[f"fid_train{N}_vs_held_out"]}
        write_result("mar", r)
    if "students" in parts:
        before = {st["example"]: st for st in r.get("students", [])}
        r["students"] = []
        for label, example, extra, start in STUDENTS:
            out = RUNS / example
            sets = list(extra) + ([f"train.init_from={RUNS / start}"] if start else [])
            if args.reuse and (out / "metrics.json").is_file() and example in before:
                seconds = before[example]["train_seconds"]  # evaluate the trained run again, do not retrain
            else:
                seconds = train(example, out, sets)
            gen, cfg = load_student(out)
            rows = [student_row(gen, k, model.patch) for k in STUDENT_ITERS]
            r["students"].append({"label": label, "example": example, "steps": load_run_config(
                out / "config.yaml").train.steps, "train_seconds": seconds, "rows": rows})
            print(r["students"][-1], flush=True)
            write_result("mar", r)
    if "levers" in parts:
        from unidistill.modalities.mar.generators import OneStepMAR

        rows = []
        for label, extra in LEVERS:
            out = RUNS / "levers" / label.split(" (")[0].replace(" ", "_").replace(",", "")
            train("marval", out, [f"train.steps={LEVER_STEPS}", *extra])
            rows.append({"label": label, "overrides": extra,
                         **json.loads((out / "metrics.json").read_text())})
            print(rows[-1], flush=True)
        start = student_row(OneStepMAR(model, 8, [2.5]).eval(), 8, model.patch)
        rl = []
        for label, extra in RL_LEVERS:  # MARVAL-RL from the MARVAL student of the students section
            out = RUNS / "rl_levers" / label.split(" (")[0].replace(" ", "_").replace(",", "")
            train("marval_rl", out, [f"train.init_from={RUNS / 'marval'}", *extra])
            rl.append({"label": label, "overrides": extra, **json.loads((out / "metrics.json").read_text())})
        r["levers"] = {"start": start, "rows": rows, "rl": rl}
        write_result("mar", r)
    if "exact" in parts:
        r["exact"] = []
        for w in (1.0, 2.0, 3.0):
            out = RUNS / f"exact_cfg{w:g}"
            if not (args.reuse and (out / "metrics.json").is_file()):
                train("marval_exact", out, [f"teacher.guidance={w}", "teacher.cfg_schedule=constant"])
            gen, cfg = load_student(out)
            r["exact"].append({"guidance": w, **per_context(gen, cfg, model)})
            print(r["exact"][-1], flush=True)
            write_result("mar", r)
    if "timing" in parts:
        from unidistill.modalities.mar.io import draw_student

        best = min(r["teacher"]["rows"], key=lambda row: row["digits_fid"])
        gen, _ = load_student(RUNS / "marval")
        rows = []
        for batch, images in ((N, N), (1, 20)):  # throughput: one batch of 1000; latency: 20 images one at a time
            labels = balanced_labels(images)
            times = {"teacher": [], **{k: [] for k in TIMED_ITERS}}
            for _ in range(3):  # alternately, so drift of the machine hits every column alike
                start = time.perf_counter()
                for lab in labels.split(batch):
                    sample_mar(model, lab, best["iters"], best["steps"], best["guidance"],
                               generator=torch.Generator().manual_seed(0))
                times["teacher"].append((time.perf_counter() - start) / images)
                for k in TIMED_ITERS:
                    start = time.perf_counter()
                    with torch.no_grad():
                        for lab in labels.split(batch):
                            draw_student(gen, lab, k, 0)
                    times[k].append((time.perf_counter() - start) / images)
            rows.append({"batch": batch, **{str(k): statistics.median(v) for k, v in times.items()}})
            print(rows[-1], flush=True)
        r["timing"] = {"repeats": 3, "teacher": {k: best[k] for k in ("iters", "steps", "guidance", "digits_fid")},
                       "student_iters": list(TIMED_ITERS), "rows": rows}
        write_result("mar", r)
    text = table(r)
    replace_section("mar", text)
    print(text)


if __name__ == "__main__":
    main()
