"""Seconds from `unidistill distill ...` to its one-line error, per kind of mistake, each run in a fresh
process (what a user waits for), against `python -c "import torch"` as the floor of anything that needs
torch. Cases alternate within each round; the table reports medians.

    python benchmarks/errors.py [--rounds 7]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import replace_section, write_result

ROOT = Path(__file__).resolve().parents[1]
TOY = str(ROOT / "examples" / "toy" / "ring8_sid.yaml")
IMAGE = str(ROOT / "examples" / "image" / "digits_sid.yaml")
TEXT = str(ROOT / "examples" / "text" / "pydoc_didi.yaml")
PDE = str(ROOT / "examples" / "pde" / "darcy_phys_instruct.yaml")
DIDR = str(ROOT / "examples" / "image" / "digits_didr.yaml")

# (what, where it is caught, config, override)
CASES = [
    ("config key typo", "config schema", TOY, "train.stepz=3"),
    ("value out of range", "config schema", IMAGE, "train.lr.generator=-1"),
    ("list of the wrong length", "config schema", TEXT, "guidance.scale=[1.0]"),
    ("divergence name typo", "registry (imports torch)", TOY, "distill.divergence.name=klx"),
    ("divergence option typo", "registry (imports torch)", IMAGE, "distill.divergence.alpah=1"),
    ("divergence option value", "registry (imports torch)", TOY, "distill.divergence={name: sim, c: -1.0}"),
    ("real source typo (toy)", "Backend.offers", TOY, "distill.real=bogus"),
    ("fake-score option typo (image)", "Backend.offers", IMAGE, "distill.fake.width=3"),
    ("reward name typo (image)", "Backend.offers", IMAGE, "distill.reward={name: clasifier, alpha: 0.1}"),
    ("real source on PDE", "Backend.offers", PDE, "distill.real=bogus"),
    ("alignment name typo (image)", "registry (imports torch)", DIDR, "distill.alignment.name=dirr"),
    ("student sigmas above the teacher's", "backend build, after the teacher", IMAGE, "student_sigmas=[500.0]"),
]


def seconds(args: list[str], out: str) -> tuple[float, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    res = subprocess.run(args, capture_output=True, text=True, env=env, cwd=out)
    took = time.perf_counter() - start
    return took, res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"exit {res.returncode}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    cli = [sys.executable, "-m", "unidistill.engine.cli", "distill"]
    runs = {"import torch": [sys.executable, "-c", "import torch"]}
    runs.update({what: [*cli, cfg, "--out", "run", "--set", override] for what, _, cfg, override in CASES})
    times: dict[str, list[float]] = {k: [] for k in runs}
    messages: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for what, cmd in runs.items():
                took, msg = seconds(cmd, tmp)
                times[what].append(took)
                messages[what] = msg
            print(f"round {r + 1}/{args.rounds}", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = ["| mistake | caught by | seconds (median) | message |", "| --- | --- | --- | --- |",
            f"| (floor) `python -c \"import torch\"` | - | {med['import torch']:.2f} | |"]
    for what, where, _, override in CASES:
        msg = messages[what].replace("|", "\\|").replace(str(ROOT) + "/", "")
        rows.append(f"| {what}: `{override}` | {where} | {med[what]:.2f} | {msg} |")
    under = sum(med[w] < 2 for w, *_ in CASES)
    text = "\n".join(rows) + (f"\n\n{under} of {len(CASES)} kinds reported in under 2 s; {args.rounds} alternating "
                              "rounds, each a fresh process on this machine. Mistakes that need torch cannot beat "
                              "its import (the floor row).")
    print(text)
    write_result("errors", {"rounds": args.rounds, "seconds": times, "median": med, "messages": messages})
    replace_section("errors", text)


if __name__ == "__main__":
    main()
