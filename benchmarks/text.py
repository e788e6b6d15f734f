"""Text benchmark: DiDi-Instruct students of the shipped masked diffusion teacher ("python" corpus: the
CPython docs and the stdlib's docstrings) against the teacher's own ancestral sampler at 8-1024 steps,
under the shipped judge.

Every row samples the same number of sequences (fixed seed) and reports the judge's generative
perplexity (pooled over all tokens), the mean per-sample unigram entropy (nats), network evaluations per
sample (the no-change cache makes a teacher's NFE at most ~L + 1), the discriminator's passes for the
guided sampler, and wall time. The floor is the judge's perplexity on held-out corpus text.

    python benchmarks/text.py [--n 256] [--methods "didi (data-free)"] [--retable]

Writes benchmarks/results/text.json, runs/bench_text/<row>.txt samples, the text section of docs/results.md
and docs/img/text_{perplexity,discriminator,training}.png.
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import read_result, replace_section, write_result

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "bench_text"
TEACHER_STEPS = [8, 16, 32, 64, 128, 256, 1024]
STUDENT_STEPS = [8, 16, 32, 64]
METHODS = {  # name -> (example config, overrides)
    "didi (shipped example: entropy 0.015)": ("pydoc_didi", []),
    "didi (entropy 0.0005: the previous example)": ("pydoc_didi", ["distill.entropy_weight=0.0005"]),
}
GUIDANCE = {"scale": (0.0, 2.0), "tilt_fraction": 0.5, "candidates": 4, "grad_clip": 1.0}


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def measure(name: str, model, tok, judge_dir, n: int, steps: int, guidance=None, disc=None, out_dir=RUNS) -> dict:
    from unidistill.modalities.text.evaluate import score_samples
    from unidistill.modalities.text.sampler import sample_ids, write_texts

    start = time.perf_counter()
    x, stats = sample_ids(model, n, steps, seed=0, guidance=guidance, discriminator=disc)
    wall = time.perf_counter() - start
    texts = tok.batch_decode(x)
    write_texts(texts, Path(out_dir) / f"{slug(name)}.txt", f"{name}: {n} samples")
    row = {"sampler": name, "steps": steps, "nfe": stats.nfe, "ms_per_sample": 1000 * wall / n,
           **{f"disc_{k}": v for k, v in stats.extra.items()}, **score_samples(x, judge_dir), "excerpt": texts[0][:160]}
    print(f"{name}: ppl {row['gen_ppl']:.2f} entropy {row['entropy']:.3f} nfe {row['nfe']:.1f} "
          f"{row['ms_per_sample']:.1f} ms", flush=True)
    return row


def training_trace(run: Path) -> dict:
    """The discriminator's logged numbers per logged step, and their means over the first and last quarter."""
    with open(Path(run) / "log.csv") as f:
        rows = list(csv.DictReader(f))
    keys = ["disc/acc_real", "disc/acc_fake", "reward_std", "loss/discriminator", "entropy"]
    trace = {k: [float(r[k]) for r in rows if r.get(k)] for k in keys}
    trace["step"] = [int(r["step"]) for r in rows]
    q = max(1, len(rows) // 4)
    out = {"trace": trace}
    for k, v in trace.items():
        if v and k != "step":
            out[f"{k}_first"], out[f"{k}_last"] = sum(v[:q]) / len(v[:q]), sum(v[-q:]) / len(v[-q:])
    return out


@torch.no_grad()
def held_out_accuracy(disc, pool: torch.Tensor, fresh: torch.Tensor, student: torch.Tensor, mask_id: int) -> dict:
    """The discriminator's accuracy ("real" for teacher samples, "fake" for the student's) on the real pool it
    trained against, on fresh teacher samples and on fresh student samples, corrupted at tau ~ Beta(2, 2)."""
    from unidistill.engine.distill_discrete import masked_mean

    g = torch.Generator().manual_seed(7)
    beta = torch.distributions.Beta(torch.tensor(2.0), torch.tensor(2.0))

    def logits(x):
        t = beta.sample((len(x),)).clamp(0.02, 0.999)
        keep = torch.rand(x.shape, generator=g) < (1 - t)[:, None]
        z = torch.where(keep, x, torch.full_like(x, mask_id))
        return masked_mean(disc(z, t).float(), z, mask_id)

    torch.manual_seed(7)
    return {"acc_pool": (logits(pool) > 0).float().mean().item(),
            "acc_fresh_teacher": (logits(fresh) > 0).float().mean().item(),
            "acc_student": (logits(student) < 0).float().mean().item()}


def disc_check(run: Path, teacher, student, disc, fresh: torch.Tensor) -> dict:
    """held_out_accuracy against the run's own real pool (redrawn: same seed, same size)."""
    import yaml

    from unidistill.modalities.text.config import TextConfig
    from unidistill.modalities.text.distill import teacher_pool

    cfg = yaml.safe_load((Path(run) / "config.yaml").read_text())
    pool_cfg = TextConfig(teacher_pool=int(cfg["teacher_pool"]), teacher_pool_steps=int(cfg["teacher_pool_steps"]))
    if cfg["distill"].get("real") == "corpus":
        from unidistill.modalities.text.corpus import corpus_blocks
        from unidistill.modalities.text.masked_lm import load_masked_lm

        pool = corpus_blocks(cfg["corpus"], load_masked_lm(Path(run) / "student")[1], teacher.length, "train")
        pool = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(0))[:256]]
    else:
        pool = teacher_pool(pool_cfg, teacher, teacher.length)[:256]
    from unidistill.modalities.text.sampler import sample_ids

    steps = int(cfg["rollout"]["steps"])
    return held_out_accuracy(disc, pool, fresh, sample_ids(student, len(fresh), steps, seed=5)[0], teacher.mask_id)


def floor(tok, judge_dir, length: int, corpus: str = "python") -> dict:
    from unidistill.modalities.text.corpus import corpus_blocks
    from unidistill.modalities.text.evaluate import load_judge
    from unidistill.modalities.text.judge import generative_perplexity, unigram_entropy

    judge = load_judge(str(judge_dir))
    held = corpus_blocks(corpus, tok, length, "held_out")
    train = corpus_blocks(corpus, tok, length, "train")
    return {"held_out_ppl": generative_perplexity(judge, held, tok.eos_token_id),
            "train_ppl": generative_perplexity(judge, train[: len(held)], tok.eos_token_id),
            "held_out_entropy": unigram_entropy(held), "held_out_blocks": len(held)}


def distill(name: str, config: str, overrides: list[str], out: Path | None = None) -> dict:
    """A fresh `unidistill distill` run of examples/text/<config>.yaml in `out` (default runs/bench_text/<name>),
    timed; `overrides` come last, so they win over the benchmark's own settings."""
    from unidistill.engine.cli import main as cli

    out = RUNS / slug(name) if out is None else Path(out)
    shutil.rmtree(out, ignore_errors=True)  # an existing run would be resumed, not re-measured
    args = ["distill", str(ROOT / "examples" / "text" / f"{config}.yaml"), "--out", str(out)]
    # the end-of-run evaluation is the benchmark's job: keep it out of the measured distillation time
    for o in ["train.progress=false", "eval.judge=none", "eval.n_samples=8", "eval.steps=[8]", "train.threads=2",
              "train.log_every=1"] + overrides:
        args += ["--set", o]
    start = time.perf_counter()
    if cli(args) != 0:
        raise RuntimeError(f"distillation {name} failed")
    return {"distill_s": time.perf_counter() - start, "run": str(out.relative_to(ROOT))}


def main() -> None:
    from unidistill.engine.masked_sampling import Guidance
    from unidistill.modalities.text.io import SHIPPED, load_run
    from unidistill.modalities.text.masked_lm import load_masked_lm
    from unidistill.modalities.text.sampler import sample_ids

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=256, help="samples per row")
    p.add_argument("--methods", help="comma-separated student names (default: all)")
    p.add_argument("--no-teacher", action="store_true", help="keep the teacher rows from text.json")
    p.add_argument("--retable", action="store_true", help="only rewrite docs/results.md from text.json")
    args = p.parse_args()
    old = read_result("text")
    if args.retable:
        replace_section("text", table(old))
        plots(old)
        return
    torch.set_num_threads(2)
    RUNS.mkdir(parents=True, exist_ok=True)
    teacher, tok = load_masked_lm(SHIPPED["teacher"])
    teacher.eval().requires_grad_(False)
    judge_dir = SHIPPED["judge"]
    training = json.loads((SHIPPED["teacher"] / "training.json").read_text())
    result = {"n": args.n, "floor": floor(tok, judge_dir, teacher.length), "teacher_training": training,
              "judge_training": json.loads((judge_dir / "training.json").read_text()),
              "teacher": old.get("teacher", []) if args.no_teacher else [], "students": old.get("students", {})}
    if not args.no_teacher:
        for k in TEACHER_STEPS:
            result["teacher"].append(measure(f"teacher {k} steps", teacher, tok, judge_dir, args.n, k))
            write_result("text", result)
    names = [n for n in args.methods.split(",") if n] if args.methods else list(METHODS)
    fresh = None
    for name in names:
        if name not in METHODS:
            sys.exit(f"unknown method {name!r}; choose from {list(METHODS)}")
        info = distill(name, *METHODS[name])
        student, _, disc = load_run(ROOT / info["run"])
        rows = [measure(f"{name}, {k} steps", student, tok, judge_dir, args.n, k) for k in STUDENT_STEPS]
        guidance = Guidance(**GUIDANCE)
        rows += [measure(f"{name}, {k} steps, guided", student, tok, judge_dir, args.n, k, guidance, disc)
                 for k in STUDENT_STEPS]
        if fresh is None:
            fresh, _ = sample_ids(teacher, 256, 32, seed=999)
        result["students"][name] = {**info, "rows": rows, **training_trace(ROOT / info["run"]),
                                    **disc_check(ROOT / info["run"], teacher, student, disc, fresh)}
        write_result("text", result)
    result["students"] = {k: v for k, v in result["students"].items() if k in METHODS}
    write_result("text", result)
    replace_section("text", table(result))
    plots(result)


def plots(result: dict) -> None:
    """docs/img/text_perplexity.png (judge PPL against steps, with the held-out floor), text_discriminator.png
    (the discriminator's accuracy and the reward's spread over distillation) and text_training.png (the
    teacher's and the judge's training against held-out curves)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img = ROOT / "docs" / "img"
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    t = result["teacher"]
    ax.plot([r["steps"] for r in t], [r["gen_ppl"] for r in t], "k-o", label="teacher")
    for name, s in result["students"].items():
        for guided, style in ((False, "-s"), (True, "--^")):
            rows = [r for r in s["rows"] if ("guided" in r["sampler"]) == guided]
            ax.plot([r["steps"] for r in rows], [r["gen_ppl"] for r in rows], style,
                    label=f"{name}{', guided' if guided else ''}")
    ax.axhline(result["floor"]["held_out_ppl"], color="grey", ls=":", label="held-out text")
    ax.set(xscale="log", yscale="log", xlabel="sampling steps", ylabel="judge perplexity",
           title="Judge perplexity against sampling steps")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(img / "text_perplexity.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for name, s in result["students"].items():
        tr = s["trace"]
        line, = axes[0].plot(tr["step"][:len(tr["disc/acc_real"])], tr["disc/acc_real"], label=f"{name}: real")
        axes[0].plot(tr["step"][:len(tr["disc/acc_fake"])], tr["disc/acc_fake"], ":", color=line.get_color(),
                     label=f"{name}: fake")
        axes[1].plot(tr["step"][:len(tr["reward_std"])], tr["reward_std"], color=line.get_color(), label=name)
    axes[0].set(xlabel="distillation step", ylabel="accuracy", title="Discriminator accuracy", ylim=(0, 1.02))
    axes[1].set(xlabel="distillation step", ylabel="std of the reward in a batch", title="Reward spread")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(img / "text_discriminator.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    tc, jc = result["teacher_training"].get("curve", []), result["judge_training"].get("curve", [])
    if tc:
        axes[0].plot([c["step"] for c in tc], [c["held_out_nelbo"] for c in tc], "o-", label="held-out NELBO")
        axes[0].plot([c["step"] for c in tc if "train_nelbo" in c], [c["train_nelbo"] for c in tc
                     if "train_nelbo" in c], "s-", label="train NELBO (same bound)")
        axes[0].plot([c["step"] for c in tc], [c["train_loss"] for c in tc], ":", label="training loss")
    axes[0].set(xlabel="step", ylabel="nats / token", title="Teacher (MDLM)")
    if jc:
        axes[1].plot([c["step"] for c in jc], [c["held_out_ppl"] for c in jc], "o-", label="held-out")
        axes[1].plot([c["step"] for c in jc], [c["train_ppl"] for c in jc], "s-", label="train")
    axes[1].set(xlabel="step", ylabel="perplexity", yscale="log", title="Judge (causal LM)")
    for a in axes:
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(img / "text_training.png", dpi=110)
    plt.close(fig)


def table(result: dict) -> str:
    f, tt, jt = result["floor"], result["teacher_training"], result["judge_training"]
    tc = [c for c in tt.get("curve", []) if "train_nelbo" in c]
    jc = jt.get("curve", [])
    lines = [
        f"Judge: the shipped GPT-2-shaped causal LM ({jt['parameters'] / 1e6:.1f} M parameters, {jt['steps']} "
        f"steps, {jt['seconds'] / 60:.0f} min on one thread). Its perplexity on held-out text of the python corpus "
        f"({f['held_out_blocks']} blocks of 64 tokens from documents it never saw) is **{f['held_out_ppl']:.2f}** "
        f"(train text: {f['train_ppl']:.2f}); held-out unigram entropy {f['held_out_entropy']:.3f} nats. "
        f"Teacher: MDLM, {tt['parameters'] / 1e6:.1f} M parameters, {tt['steps']} steps, "
        f"{tt['seconds'] / 60:.0f} min on one CPU thread. {result['n']} samples of 64 tokens per row, fixed seed.",
        "",
    ]
    if tc:
        last = tc[-1]
        lines += [f"Learning curves (docs/img/text_training.png): the teacher's NELBO bound at step "
                  f"{last['step']:.0f} is {last['held_out_nelbo']:.3f} nats/token on held-out blocks and "
                  f"{last['train_nelbo']:.3f} on as many train blocks (training loss with dropout: "
                  f"{last['train_loss']:.3f}); the judge's perplexity is {jc[-1]['held_out_ppl']:.1f} held-out and "
                  f"{jc[-1]['train_ppl']:.1f} on train text." if jc else "", ""]
    lines += ["| sampler | steps | NFE / sample | disc. passes / sample | judge PPL | entropy | ms / sample |",
              "| --- | --- | --- | --- | --- | --- | --- |"]

    def line(r, bold=False):
        name = f"**{r['sampler']}**" if bold else r["sampler"]
        disc = r.get("disc_disc_forward")
        disc = f"{disc:.0f} fwd + {r['disc_disc_backward']:.0f} bwd" if disc is not None else "-"
        return (f"| {name} | {r['steps']} | {r['nfe']:.1f} | {disc} | {r['gen_ppl']:.2f} | {r['entropy']:.3f} | "
                f"{r['ms_per_sample']:.1f} |")

    lines += [line(r) for r in result["teacher"]]
    for s in result["students"].values():
        lines += [line(r, True) for r in s["rows"]]
    teacher = {r["steps"]: r for r in result["teacher"]}
    for name, s in result["students"].items():
        ratio = s["distill_s"] / tt["seconds"]
        lines += ["", f"**{name}** (distillation {s['distill_s']:.0f} s, {ratio:.3f} of the teacher's training "
                  f"time; goal under 1/20 = 0.05: {'met' if ratio < 0.05 else 'not met'}):", ""]
        for guided in (False, True):
            s16 = next((r for r in s["rows"] if r["steps"] == 16 and ("guided" in r["sampler"]) == guided), None)
            for k in (256, 1024):
                t = teacher.get(k)
                if t is None or s16 is None:
                    continue
                drop = 1 - s16["entropy"] / t["entropy"]
                lines.append(
                    f"- 16 steps{', guided' if guided else ''} against the {k}-step teacher: judge PPL "
                    f"{s16['gen_ppl']:.2f} vs {t['gen_ppl']:.2f} (at or below: "
                    f"{'met' if s16['gen_ppl'] <= t['gen_ppl'] else 'not met'}), entropy {abs(100 * drop):.1f}% "
                    f"{'below' if drop >= 0 else 'above'} (within 2%: {'met' if abs(drop) <= 0.02 else 'not met'}).")
        if "acc_pool" in s:
            lines.append(
                f"- Discriminator: accuracy on real / fake batches {s['disc/acc_real_first']:.2f} / "
                f"{s['disc/acc_fake_first']:.2f} in the first quarter of training, {s['disc/acc_real_last']:.2f} / "
                f"{s['disc/acc_fake_last']:.2f} in the last; reward spread (std in a batch) "
                f"{s['reward_std_first']:.2f} -> {s['reward_std_last']:.2f}. At the end it calls "
                f"{100 * s['acc_pool']:.0f}% of its real pool and {100 * s['acc_fresh_teacher']:.0f}% of fresh "
                f"teacher samples real, and {100 * s['acc_student']:.0f}% of the final (EMA) student's samples fake.")
    lines += ["", "Sample excerpts (first sample of each row, first 160 characters; all samples are in "
              "`runs/bench_text/*.txt`):", ""]
    rows = [r for r in result["teacher"] if r["steps"] in (16, 256, 1024)]
    rows += [r for s in result["students"].values() for r in s["rows"] if r["steps"] == 16]
    for r in rows:
        text = r["excerpt"].replace("`", "'").replace("\n", " / ")
        lines.append(f"- {r['sampler']}: `{text}`")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
