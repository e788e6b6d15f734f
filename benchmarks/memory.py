"""The memory estimate (engine/memory.py) against the peak resident memory of real training, on the digits
distillation (examples/image/digits_sim.yaml: SIM, generator and fake score copied from the teacher) with a
random teacher UNet of two widths, each with and without activation checkpointing, one thread.

Each measurement is a fresh subprocess that reports its own peak RSS (getrusage(RUSAGE_SELF).ru_maxrss; the
parent's RUSAGE_CHILDREN would be the maximum over every child waited for so far, not this child's):
  import   imports torch, diffusers and the engine;
  build    also builds the objective and the Trainer (networks, teacher, EMA), without a step;
  train    also runs one warm-up and --steps training steps (Trainer.train_step, no evaluation or checkpoint,
           which `unidistill distill` would add to the peak);
  estimate builds the same run and returns engine.memory.estimate's parts.
Training adds gradients, optimizer state and activations to what `build` holds: that part of the estimate
is compared with train - build; the whole estimate with train - import.

    python benchmarks/memory.py [--steps 3 --batch 64]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "image" / "digits_sim.yaml"
SHIPPED = ROOT / "modalities" / "image" / "weights" / "digits_edm"
WIDTHS = {"small": [32, 64], "large": [96, 192]}  # block_out_channels of the teacher (the shipped one: small)
MiB = 2**20


def write_teacher(folder: Path, widths: list[int]) -> Path:
    """A randomly initialised digits teacher: the shipped UNet's config with other widths, its scheduler."""
    import torch
    from diffusers import UNet2DModel

    config = json.loads((SHIPPED / "unet" / "config.json").read_text())
    config = {k: v for k, v in config.items() if not k.startswith("_")} | {"block_out_channels": widths}
    torch.manual_seed(0)
    UNet2DModel(**config).save_pretrained(folder / "unet")
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text((SHIPPED / "scheduler" / "scheduler_config.json")
                                                                .read_text())
    return folder


def child(mode: str, teacher: str, batch: int, steps: int, checkpointing: bool) -> dict:
    """One measurement, in this (fresh) process."""
    from diffusers import UNet2DModel  # noqa: F401  (torch and diffusers in every mode: `import` is their floor)

    from unidistill.engine import memory
    from unidistill.engine.cli import build_objective, load_run_config
    from unidistill.engine.trainer import Trainer

    out: dict = {}
    if mode != "import":
        overrides = [f"teacher={teacher}", f"train.batch_size={batch}", "train.threads=1", "train.device=cpu",
                     "train.progress=false", "train.mixed_precision=no",
                     f"train.activation_checkpointing={str(checkpointing).lower()}"]
        run = load_run_config(CONFIG, overrides)
        with tempfile.TemporaryDirectory() as scratch:
            obj = build_objective(run, Path(scratch), "distill")
            trainer = Trainer(obj, run.train, Path(scratch))
            if mode == "estimate":
                e = memory.estimate(trainer)
                out.update({k: getattr(e, k) for k in (*memory.PARTS, "activations", "total", "peak", "held")})
                out["parameter_count"] = sum(p.numel() for p in obj.modules["generator"].parameters())
            if mode == "train":
                for _ in range(steps + 1):
                    trainer.train_step()
                    trainer.step += 1
    out["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    return out


def measure(mode: str, teacher: Path | None, args, checkpointing: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--teacher", str(teacher), "--batch", str(args.batch),
           "--steps", str(args.steps)] + (["--checkpointing"] if checkpointing else [])
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"child {mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--child", choices=["import", "build", "train", "estimate"])
    ap.add_argument("--teacher")
    ap.add_argument("--checkpointing", action="store_true")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.teacher, args.batch, args.steps, args.checkpointing)))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import replace_section, write_result

    floor = measure("import", None, args)["peak_rss"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size, widths in WIDTHS.items():
            teacher = write_teacher(Path(tmp) / size, widths)
            for checkpointing in (False, True):
                est = measure("estimate", teacher, args, checkpointing)
                built = measure("build", teacher, args, checkpointing)["peak_rss"]
                trained = measure("train", teacher, args, checkpointing)["peak_rss"]
                increment = est["gradients"] + est["optimizer"] + est["activations"]
                rows.append({"size": size, "block_out_channels": widths, "generator_parameters": est["parameter_count"],
                             "activation_checkpointing": checkpointing, "batch": args.batch, "estimate": est,
                             "rss_import": floor, "rss_build": built, "rss_train": trained,
                             "estimated_increment": increment, "measured_increment": trained - built,
                             "estimated_total": est["total"], "measured_total": trained - floor})
                r = rows[-1]
                print(f"{size:>5} {str(widths):>9} ckpt={'on ' if checkpointing else 'off'}  training increment: "
                      f"estimated {increment / MiB:7.1f} MiB, measured {r['measured_increment'] / MiB:7.1f} MiB "
                      f"(ratio {r['measured_increment'] / increment:.2f});  total: estimated "
                      f"{est['total'] / MiB:7.1f} MiB, measured {r['measured_total'] / MiB:7.1f} MiB "
                      f"(activations {est['activations'] / MiB:.1f} MiB)", flush=True)
    path = write_result("memory", {
        "what": f"engine.memory.estimate against peak RSS, {CONFIG.name} with a random teacher UNet of two widths, "
                f"batch {args.batch}, {args.steps} steps after one warm-up step, 1 thread, CPU; increment = train "
                "- build (gradients, optimizer state, activations), total = train - import",
        "rows": rows})
    print(f"wrote {path}")
    table = ["| teacher UNet widths | generator parameters | activation checkpointing | estimated activations (MiB) | "
             "estimated, a floor (MiB) | peak to plan for (MiB) | measured (MiB) | measured / floor | "
             "measured / peak |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        e, floor = r["estimate"], r["estimated_increment"]
        peak = floor + e["peak"] - e["total"]
        table.append(f"| {r['block_out_channels']} | {r['generator_parameters'] / 1e6:.1f} M | "
                     f"{'on' if r['activation_checkpointing'] else 'off'} | {e['activations'] / MiB:.1f} | "
                     f"{floor / MiB:.1f} | {peak / MiB:.1f} | {r['measured_increment'] / MiB:.1f} | "
                     f"{r['measured_increment'] / floor:.2f} | {r['measured_increment'] / peak:.2f} |")
    table.append(f"\n{CONFIG.name}, batch {args.batch} on one process, {args.steps} steps after a warm-up, 1 thread, "
                 "CPU. What training adds to a built run (each figure its own subprocess): measured, the peak RSS of a "
                 "process that trains minus that of one that only built the run; estimated (`unidistill estimate`, "
                 "`engine/memory.py`), its gradients, AdamW moments and the activations autograd saves at batch 1 and "
                 "2, extrapolated (a floor); the peak to plan for adds the activations once more, twice with "
                 "activation checkpointing. Weights, EMA and the frozen teacher, which the built run already holds, "
                 "are in both baselines.")
    replace_section("memory", "\n".join(table))


if __name__ == "__main__":
    main()
