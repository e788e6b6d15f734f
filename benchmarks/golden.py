"""Golden runs: every example config trained for a few fixed-seed steps, fingerprinted by SHA-256.

A refactor that claims to preserve behaviour must reproduce these digests bit for bit. For each example
(on its shipped teacher; a tiny stand-in where the example points at weights that are not shipped, such
as Stable Diffusion) the script runs `unidistill distill|teach` with the overrides below, one intra-op
thread, then hashes:

  ema      the EMA generator tensors of the final checkpoint (sorted keys, dtype, shape and bytes)
  modules  every trained module's live tensors in that checkpoint (generator, fake score, discriminator)
  metrics  metrics.json as written
  export   every .safetensors file the run exported (student/, teacher/, judge/, discriminator)

    python benchmarks/golden.py                 # record: writes benchmarks/results/golden.json
    python benchmarks/golden.py --check         # compare against it; exit 1 on any difference
    python benchmarks/golden.py --only ring8_sid,digits_sim

Digests depend on the machine's floating-point kernels (CPU model, torch build); compare on one machine.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tiny teacher fixtures
sys.path.insert(0, str(ROOT / "benchmarks"))
from example_commands import command_of  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "golden.json"
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))
COMMON = ["train.steps=3", "train.batch_size=16", "train.progress=false", "train.checkpoint_every=2",
          "train.log_every=1", "train.eval_every=0", "train.mixed_precision=no"]


def overrides(path: Path, fixtures: dict[str, Path]) -> list[str]:
    """Few-step, cheap-evaluation overrides for one example; teachers stay the shipped ones."""
    import yaml

    data = yaml.safe_load(path.read_text())
    modality, teach = data.get("modality"), command_of(path) == "teach"
    extra: list[str] = []
    if modality == "image" and teach:
        extra = ["eval.n_samples=20", "eval.steps=2"]
    elif modality == "image":
        extra = ["eval.n_samples=50", "real_pool=32"]
        if not Path(str(data.get("teacher", "digits"))).is_dir() and data.get("teacher") not in ("digits",
                                                                                                 "digits_flow"):
            extra.append(f"teacher={fixtures['sd']}")
    elif modality == "toy_gmm":
        extra = ["eval.n_samples=200"]
    elif modality == "toy_markov":
        extra = ["warm_start_steps=20"]
    elif modality == "text" and teach:
        extra = ["eval.n_samples=4", "eval.steps=4", "eval.held_out_blocks=8", "eval.judge=none"]
    elif modality == "text":
        extra = ["teacher_pool=16", "teacher_pool_steps=4", "eval.n_samples=4", "eval.steps=[4]"]
    elif modality == "pde" and teach:
        pde = Path(data["data"]).name.rstrip("0123456789")
        extra = [f"data={fixtures['pde_' + pde]}", "network.sample_size=16", "eval.n_samples=4", "eval.steps=2"]
    elif modality == "pde":
        extra = ["eval.n_samples=8"]
        if data.get("condition"):  # a one-pass solver: a few training and held-out problems
            extra += ["condition.instances=16", "condition.eval_instances=4"]
    elif modality == "3d" and teach:
        extra = ["eval.n_samples=2", "eval.steps=2"]
    elif modality == "3d":
        extra = ["eval.turntable=2", "eval.views=2"]
        path_ = (data.get("teacher") or {}).get("path")
        if path_ not in (None, "shipped") and not Path(path_).is_dir():  # Stable Diffusion: the tiny stand-in
            extra += [f"teacher.path={fixtures['sd']}", "render.sizes=[[0.0,16]]"]
    elif modality == "mar" and teach:
        extra = ["eval.n_samples=20", "eval.steps=2"]
    elif modality == "mar":
        extra = ["eval.n_samples=20"]
    return COMMON + extra


def make_fixtures(root: Path) -> dict[str, Path]:
    from image_fixtures import tiny_sd_teacher
    from pde_fixtures import tiny_pde_data

    return {"sd": tiny_sd_teacher(root / "sd"),
            **{f"pde_{p}": tiny_pde_data(root / f"data_{p}", p) for p in ("darcy", "poisson", "helmholtz", "burgers")}}


def tensor_digest(tensors: dict) -> str:
    import torch

    h = hashlib.sha256()
    for k in sorted(tensors):
        v = tensors[k].detach().contiguous().cpu()
        h.update(f"{k}|{v.dtype}|{tuple(v.shape)}|".encode())
        h.update(v.view(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


def metrics_digest(path: Path) -> str:
    """SHA-256 of metrics.json without its wall-clock timings (keys naming seconds, e.g. MAR's seconds_per_image),
    which no rerun reproduces; a file without such keys is hashed byte for byte, as always."""
    data = json.loads(path.read_text())
    timed = [k for k in data if "seconds" in k or k.endswith("_s_per_image")]
    if not timed:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    kept = {k: v for k, v in data.items() if k not in timed}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()


def fingerprint(run: Path) -> dict[str, str]:
    from safetensors.torch import load_file

    from unidistill.engine import checkpoint as ckpt

    tensors, _ = ckpt.load_latest(run / "checkpoints")
    out = {"ema": tensor_digest({k: v for k, v in tensors.items() if k.startswith("ema.")}),
           "modules": tensor_digest({k: v for k, v in tensors.items() if k.startswith("module.")})}
    metrics = run / "metrics.json"
    out["metrics"] = metrics_digest(metrics) if metrics.is_file() else "-"
    exported = sorted(p for p in run.rglob("*.safetensors") if "checkpoints" not in p.parts
                      and p.name != "teacher_pool.safetensors")
    h = hashlib.sha256()
    for p in exported:
        h.update(str(p.relative_to(run)).encode())
        h.update(tensor_digest(load_file(str(p))).encode())
    out["export"] = h.hexdigest() if exported else "-"
    return out


def run_one(path: Path, fixtures: dict[str, Path], work: Path) -> dict:

    from unidistill.engine.cli import main

    out = work / path.stem
    shutil.rmtree(out, ignore_errors=True)
    command = command_of(path)
    args = [command, str(path), "--out", str(out)]
    for o in overrides(path, fixtures):
        args += ["--set", o]
    start = time.perf_counter()
    code = main(args)
    if code != 0:
        raise SystemExit(f"{path.name}: unidistill {command} exited {code}")
    return {"seconds": round(time.perf_counter() - start, 1), **fingerprint(out)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="compare with benchmarks/results/golden.json")
    p.add_argument("--only", help="comma-separated example names")
    args = p.parse_args()
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(1)
    names = set(args.only.split(",")) if args.only else None
    examples = [e for e in EXAMPLES if names is None or e.stem in names]
    recorded = json.loads(RESULT.read_text())["runs"] if RESULT.is_file() else {}
    results, failures = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        fixtures = make_fixtures(Path(tmp) / "fixtures")
        for path in examples:
            key = f"{path.parent.name}/{path.stem}"
            results[key] = got = run_one(path, fixtures, Path(tmp) / "runs")
            if args.check:
                want = recorded.get(key)
                diff = [k for k in ("ema", "modules", "metrics", "export") if want is None or want[k] != got[k]]
                status = "same" if not diff else "DIFFERENT: " + ", ".join(diff)
                if diff:
                    failures.append(key)
            else:
                status = "recorded"
            print(f"{key:32s} {got['seconds']:6.1f} s  ema {got['ema'][:12]}  {status}", flush=True)
    if args.check:
        print(f"{len(results) - len(failures)} of {len(results)} golden runs reproduce bit for bit")
        return 1 if failures else 0
    from common import machine

    merged = {**recorded, **results}
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps({"machine": machine(), "overrides": COMMON, "runs": merged}, indent=1))
    print(f"wrote {RESULT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
