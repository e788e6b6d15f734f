"""Text levers: short DiDi-Instruct distillations of one teacher that differ in one setting each, scored by
the 16-step student's judge perplexity and unigram entropy beside the discriminator's behaviour over
training (accuracy on its real and fake batches, the reward's spread within a batch) and, at the end, its
accuracy on fresh teacher samples it never saw (memorisation of the real pool shows as a gap between
that and its accuracy on the pool).

    python benchmarks/text_levers.py [--teacher FOLDER --judge FOLDER] [--only a,b] [--n 256] [--retable]

Writes benchmarks/results/text_levers.json, runs/text_levers/<lever>/ and the text-levers section of
docs/results.md (the "what we tried" table)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import read_result, replace_section, write_result
from text import ROOT, disc_check, distill, measure, slug, training_trace

RUNS = ROOT / "runs" / "text_levers"
LEVERS = {  # name -> overrides of examples/text/pydoc_didi.yaml
    "example as it was": [],
    "disc. lr 1e-4": ["train.lr={generator: 3.0e-4, discriminator: 1.0e-4}"],
    "label smoothing 0.2": ["distill.label_smoothing=0.2"],
    "replay 4": ["distill.replay=4"],
    "replay 8": ["distill.replay=8"],
    "replay 4 + label smoothing 0.1": ["distill.replay=4", "distill.label_smoothing=0.1"],
    "teacher pool 1024": ["teacher_pool=1024"],
    "real: corpus": ["distill.real=corpus"],
    "trainable blocks 2": ["distill.discriminator={trainable_blocks: 2}"],
    "f = forward KL": ["distill.divergence={name: didi, f: fkl, group_size: 4, clip: 3.0}"],
    "f = Jensen-Shannon": ["distill.divergence={name: didi, f: js, group_size: 4, clip: 3.0}"],
    "entropy 0.003": ["distill.entropy_weight=0.003"],
    "entropy 0.006": ["distill.entropy_weight=0.006"],
    "entropy 0.01": ["distill.entropy_weight=0.01"],
    "entropy 0.015": ["distill.entropy_weight=0.015"],
    "entropy 0.02": ["distill.entropy_weight=0.02"],
    "group size 8": ["distill.divergence={name: didi, f: rkl, group_size: 8, clip: 3.0}"],
    "rollout 4 steps": ["rollout.steps=4"],
    "EMA 0.9": ["train.ema_decay=0.9"],
}


def main() -> None:
    from unidistill.modalities.text.io import SHIPPED, load_run
    from unidistill.modalities.text.masked_lm import load_masked_lm
    from unidistill.modalities.text.sampler import sample_ids

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="shipped")
    p.add_argument("--judge", default=None, help="judge folder (default: the shipped judge)")
    p.add_argument("--only", help="comma-separated lever names (default: all)")
    p.add_argument("--n", type=int, default=256, help="student samples scored per lever")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--retable", action="store_true")
    p.add_argument("--results", default="text_levers", help="results file name (the docs table is written for "
                   "the default only)")
    args = p.parse_args()
    result = read_result(args.results)
    result.setdefault("levers", {})
    if args.retable:
        replace_section("text-levers", table(result))
        return
    torch.set_num_threads(args.threads)
    judge = Path(args.judge) if args.judge else SHIPPED["judge"]
    teacher_dir = SHIPPED["teacher"] if args.teacher == "shipped" else Path(args.teacher)
    teacher, tok = load_masked_lm(teacher_dir)
    teacher.eval().requires_grad_(False)
    names = [n for n in args.only.split(",") if n] if args.only else list(LEVERS)
    fresh = None
    for name in names:
        if name not in LEVERS:
            sys.exit(f"unknown lever {name!r}; choose from {list(LEVERS)}")
        run = RUNS / slug(name)
        # the lever runs logged every 10 updates (the example's setting); the weights do not depend on it
        seconds = distill(name, "pydoc_didi", [f"teacher={teacher_dir}", f"train.threads={args.threads}",
                                               "train.log_every=10", *LEVERS[name]], out=run)["distill_s"]
        student, _, disc = load_run(run)
        row = measure(f"{name}, 16 steps", student, tok, judge, args.n, 16, out_dir=run)
        if fresh is None:
            fresh, _ = sample_ids(teacher, 256, 32, seed=999)
        acc = disc_check(run, teacher, student, disc, fresh)
        result["levers"][name] = {"overrides": LEVERS[name], "distill_s": seconds, **row, **acc,
                                  **training_trace(run), "teacher": str(teacher_dir)}
        print(f"{name}: ppl {row['gen_ppl']:.1f} entropy {row['entropy']:.3f} acc pool/fresh/student "
              f"{acc['acc_pool']:.2f}/{acc['acc_fresh_teacher']:.2f}/{acc['acc_student']:.2f}", flush=True)
        write_result(args.results, result)
    if args.results == "text_levers":
        replace_section("text-levers", table(result))


def table(result: dict) -> str:
    lines = ["| lever (one change to the example) | judge PPL, 16 steps | entropy | disc. acc. real / fake, first "
             "quarter | last quarter | reward spread, first / last | final disc. acc.: pool / fresh teacher / "
             "student | distill s |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in result["levers"].items():
        lines.append(
            f"| {name} | {r['gen_ppl']:.1f} | {r['entropy']:.3f} | {r.get('disc/acc_real_first', 0):.2f} / "
            f"{r.get('disc/acc_fake_first', 0):.2f} | {r.get('disc/acc_real_last', 0):.2f} / "
            f"{r.get('disc/acc_fake_last', 0):.2f} | {r.get('reward_std_first', 0):.3f} / "
            f"{r.get('reward_std_last', 0):.3f} | {r['acc_pool']:.2f} / {r['acc_fresh_teacher']:.2f} / "
            f"{r['acc_student']:.2f} | {r['distill_s']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
