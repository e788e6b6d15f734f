"""What `train.activation_checkpointing` and `train.compile` cost and save, per training step.

For each config, three trainers are built from the same seed: plain, with activation checkpointing, and with
torch.compile on the generator's and the teacher's forward passes. Each is warmed up (compilation happens
there, and is timed), then blocks of steps alternate between them, in a rotating order, in one process, and
the median seconds per step are compared. Activation memory is what autograd saves for backward in one
generator loss (engine/memory.py), with and without checkpointing.

    python benchmarks/speedups.py [--configs image/digits_sim,mar/marval] [--iters 3 --rounds 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# a fresh compile cache, so the first steps show what compilation costs a new user (a warm cache took 9 s
# where a cold one took 147 s on digits)
os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="unidistill_inductor_")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import replace_section, write_result

from unidistill.engine.cli import load_run_config
from unidistill.engine.memory import activation_bytes
from unidistill.engine.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"plain": [], "activation checkpointing": ["train.activation_checkpointing=true"],
            "compile": ["train.compile=true"]}
SMALL = {"image": ["eval.n_samples=20", "real_pool=16"], "mar": ["eval.n_samples=20"]}


def trainer(config: str, extra: list[str], out: Path, batch: int) -> Trainer:
    path = ROOT / "examples" / f"{config}.yaml"
    modality = config.split("/")[0]
    run = load_run_config(path, ["train.progress=false", "train.device=cpu", f"train.batch_size={batch}",
                                 "train.checkpoint_every=100000", *SMALL.get(modality, []), *extra])
    torch.manual_seed(run.train.seed)
    obj = run.backend.build(run.cfg, out)
    t = Trainer(obj, run.train, out)
    obj.start()
    return t


def measure(config: str, iters: int, rounds: int, batch: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        trainers, warm = {}, {}
        for name, extra in VARIANTS.items():
            trainers[name] = trainer(config, extra, Path(tmp) / name.replace(" ", "_"), batch)
            t0 = time.perf_counter()
            trainers[name].train_step()  # compilation happens here
            trainers[name].train_step()
            warm[name] = time.perf_counter() - t0
        saved = {name: activation_bytes(trainers[name]) for name in ("plain", "activation checkpointing")}
        times: dict[str, list[float]] = {name: [] for name in trainers}
        names = list(trainers)
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                t0 = time.perf_counter()
                for _ in range(iters):
                    trainers[name].train_step()
                times[name].append((time.perf_counter() - t0) / iters)
    median = {k: statistics.median(v) for k, v in times.items()}
    return {"config": config, "batch": batch, "seconds_per_step": median, "warmup_seconds": warm,
            "activation_bytes": saved, "rounds": rounds, "iters": iters}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="image/digits_sim,mar/marval")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="write the JSON here and leave docs/results.md alone")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for config in args.configs.split(","):
        rows.append(measure(config, args.iters, args.rounds, args.batch))
        r = rows[-1]
        print(config, {k: round(v, 4) for k, v in r["seconds_per_step"].items()},
              {k: round(v, 1) for k, v in r["warmup_seconds"].items()}, flush=True)
    result = {"what": f"median seconds per training step (generator + fake-score update) of three trainers "
                      f"alternating in one process, {args.rounds} rounds of {args.iters} steps, batch {args.batch}, "
                      f"{args.threads} threads, CPU", "rows": rows}
    path = write_result("speedups", result) if args.out is None else args.out
    if args.out is not None:
        import json

        args.out.write_text(json.dumps(result, indent=1))
        return
    table = ["| config | variant | s / step (median) | vs plain | first two steps (s) | saved activations (MiB) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        plain = r["seconds_per_step"]["plain"]
        for name, sec in r["seconds_per_step"].items():
            act = r["activation_bytes"].get(name)
            table.append(f"| {r['config']} | {name} | {sec:.3f} | {sec / plain:.2f}x | "
                         f"{r['warmup_seconds'][name]:.1f} | {'' if act is None else f'{act / 2**20:.1f}'} |")
    table.append(f"\n{result['what']}. The first two steps include compilation for `compile`, with an empty "
                 "compile cache. Saved activations: "
                 "the tensors autograd keeps for backward, the larger of the auxiliary and the generator loss, at this "
                 "batch (`engine/memory.py`).")
    replace_section("speedups", "\n".join(table))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
