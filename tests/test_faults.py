"""Fault injection: runs that cannot be corrupted.

- SIGKILL at random moments (between and during checkpoint writes), resumed each time: the final weights are
  bit-identical to an uninterrupted run's and log.csv holds each step once, in order.
- SIGINT/SIGTERM write a checkpoint at the current step and exit in one line; the run resumes bit-exactly.
- Non-finite weights never reach a checkpoint; a non-finite checkpoint is refused on resume, naming the last
  finite one; a run whose every step was skipped fails.
- A second run in a running run's folder is refused at once, naming the holder; the first is unharmed.
- A resume that would change what the checkpoint trains is refused unless --resume-changed.
"""
from __future__ import annotations

import csv
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from unidistill.engine import checkpoint as ckpt
from unidistill.engine.cli import main

ROOT = Path(__file__).parents[1]
TOY = {"modality": "toy_gmm", "mixture": {"ring": {"modes": 4, "radius": 2.0, "std": 0.3}},
       "generator": {"hidden": 32, "depth": 2}, "distill": {"divergence": {"name": "sid", "alpha": 1.0,
                                                                          "weighting": "sigma4"},
                                                           "fake": {"hidden": 32, "depth": 2}},
       "eval": {"n_samples": 100},
       "train": {"steps": 200, "batch_size": 32, "lr": {"generator": 1e-3, "fake": 1e-3}, "checkpoint_every": 1,
                 "log_every": 1, "progress": False, "threads": 1, "keep_checkpoints": 2}}
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def write(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def command(config: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "unidistill.engine.cli", "distill", str(config), "--out", str(out), *extra]


def final_state(run: Path) -> dict[str, torch.Tensor]:
    tensors, meta = ckpt.load_latest(run / "checkpoints")
    return {k: v for k, v in tensors.items() if k.startswith(("module.", "ema.", "optim.", "rng."))}


def logged_steps(run: Path) -> list[int]:
    with open(run / "log.csv", newline="") as f:
        return [int(float(r["step"])) for r in csv.DictReader(f)]


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every interrupted one must reproduce."""
    root = tmp_path_factory.mktemp("reference")
    cfg = write(root / "toy.yaml", TOY)
    subprocess.run(command(cfg, root / "run"), env=ENV, check=True, capture_output=True, timeout=600)
    return cfg, final_state(root / "run")


@pytest.mark.slow
def test_sigkill_at_random_moments_resumes_bit_exactly(reference, tmp_path):
    cfg, want = reference
    run = tmp_path / "run"
    rng = random.Random(0)
    kills, mid_write = 0, 0
    while kills < 12:
        done = len(logged_steps(run)) if (run / "log.csv").is_file() else 0
        proc = subprocess.Popen(command(cfg, run), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and (not (run / "log.csv").is_file() or len(logged_steps(run)) <= done):
            time.sleep(0.01)  # until this attempt trains (start-up takes seconds)
        time.sleep(rng.random() * 0.15)  # then a few steps (about 15 ms each, most of it checkpointing)
        if proc.poll() is not None:
            break  # finished before the kill
        proc.kill()
        proc.wait()
        kills += 1
        mid_write += any(p.name.endswith(".tmp") for p in (run / "checkpoints").glob("*"))
    subprocess.run(command(cfg, run), env=ENV, check=True, capture_output=True, timeout=600)
    assert kills >= 10, f"only {kills} kills landed before the run finished"
    assert mid_write >= 1, "no kill landed during a checkpoint write"
    assert_same(final_state(run), want)
    steps = logged_steps(run)
    assert steps == list(range(1, TOY["train"]["steps"] + 1)), steps


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_checkpoints_the_current_step_and_resumes_bit_exactly(reference, tmp_path, signum):
    cfg, want = reference
    data = yaml.safe_load(cfg.read_text())
    data["train"]["checkpoint_every"] = 1000  # only the interrupt (and the end) checkpoint
    cfg = write(tmp_path / "toy.yaml", data)
    run = tmp_path / "run"
    proc = subprocess.Popen(command(cfg, run), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not (run / "log.csv").is_file() or len(logged_steps(run)) < 3:
        time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"unidistill: interrupted: {signal.Signals(signum).name} at step")
    step = int(lines[0].split(" at step ")[1].split(":")[0])
    assert (run / "checkpoints" / f"step_{step:08d}").is_dir() and 3 <= step < 200
    subprocess.run(command(cfg, run), env=ENV, check=True, capture_output=True, timeout=600)
    got = final_state(run)
    assert_same({k: v for k, v in got.items() if not k.startswith("optim.")},
                {k: v for k, v in want.items() if not k.startswith("optim.")})
    assert logged_steps(run) == list(range(1, 201))


def test_non_finite_weights_never_reach_a_checkpoint(tmp_path, capsys):
    """NaN written into the generator's weights mid-run (step 3) is caught before the next checkpoint: the
    run stops in one line (exit 3), every checkpoint on disk is finite, and a non-finite checkpoint written
    behind the library's back (manifest updated to match) is refused on resume, naming the last finite one."""
    import unidistill.modalities.toy_gmm.distill as toy_distill

    cfg = write(tmp_path / "toy.yaml", {**TOY, "train": {**TOY["train"], "steps": 6, "checkpoint_every": 2}})
    original = toy_distill.build_distill

    def poisoned(*args):
        obj = original(*args)
        real, calls = obj.generator_loss, [0]

        def loss(noise, n, progress):
            calls[0] += 1
            if calls[0] == 3:
                with torch.no_grad():
                    next(obj.modules["generator"].parameters())[0].fill_(float("nan"))
            return real(noise, n, progress)

        obj.generator_loss = loss
        return obj

    toy_distill.build_distill = poisoned
    try:
        code = main(["distill", str(cfg), "--out", str(tmp_path / "run")])
    finally:
        toy_distill.build_distill = original
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and len(err) == 1 and "is non-finite; the checkpoint was not written" in err[0], err
    assert "step_00000002" in err[0]
    for path in ckpt.checkpoints(tmp_path / "run" / "checkpoints"):
        tensors, _ = ckpt.load(path)
        assert ckpt.non_finite(tensors) is None
    good = ckpt.latest(tmp_path / "run" / "checkpoints")
    tensors, meta = ckpt.load(good)
    tensors = {k: (v.clone().fill_(float("nan")) if k.startswith("ema.") else v) for k, v in tensors.items()}
    from safetensors.torch import save_file

    bad = tmp_path / "run" / "checkpoints" / "step_00000004"
    bad.mkdir()
    save_file(ckpt._unshared(tensors), str(bad / ckpt.TENSORS))
    ckpt._write_json(bad / ckpt.META, {**meta, "step": 4})
    ckpt._write_json(bad / ckpt.MANIFEST, {n: ckpt._sha256(bad / n) for n in (ckpt.TENSORS, ckpt.META)})
    (tmp_path / "run" / "checkpoints" / ckpt.LATEST).write_text(bad.name)
    assert main(["distill", str(cfg), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "non-finite values in ema." in err[0] and f"--resume {good}" in err[0], err


def test_an_update_that_makes_weights_non_finite_stops_the_run(tmp_path):
    """The optimizer step itself leaves a weight infinite (here forced at the third step): stopped before the
    EMA or a checkpoint takes the values, naming the module."""
    from unidistill.engine.config import TrainConfig
    from unidistill.engine.errors import TrainingError
    from unidistill.engine.trainer import Trainer

    sys.path.insert(0, str(Path(__file__).parent))
    from tiny import make_objective

    obj = make_objective()
    cfg = TrainConfig(steps=5, batch_size=16, progress=False, device="cpu", checkpoint_every=1)
    trainer = Trainer(obj, cfg, tmp_path)
    opt, calls = trainer.opt["generator"].opt, [0]
    real_step = opt.step

    def overflowing_step(*args, **kwargs):
        real_step(*args, **kwargs)
        calls[0] += 1
        if calls[0] == 3:
            with torch.no_grad():
                trainer.opt["generator"].params[0].view(-1)[0] = float("inf")

    opt.step = overflowing_step
    with pytest.raises(TrainingError, match="the update at step 3 made the 'generator' weights non-finite"):
        trainer.fit()
    assert trainer.step == 2
    assert all(torch.isfinite(v).all() for v in trainer.ema.values())
    for path in ckpt.checkpoints(tmp_path / "checkpoints"):
        assert ckpt.non_finite(ckpt.load(path)[0]) is None


def test_a_run_whose_every_step_was_skipped_fails(tmp_path, capsys):
    """Every generator loss NaN (a NaN teacher), max_skipped above the run's length: exit 3, not 0."""
    from unidistill.engine.config import TrainConfig
    from unidistill.engine.errors import TrainingError
    from unidistill.engine.trainer import Trainer

    sys.path.insert(0, str(Path(__file__).parent))
    from tiny import make_objective

    obj = make_objective()
    real = obj.generator_loss
    obj.generator_loss = lambda noise, n, progress: (real(noise, n, progress)[0] * float("nan"), {})
    cfg = TrainConfig(steps=5, batch_size=16, max_skipped=50, progress=False, device="cpu")
    with pytest.raises(TrainingError, match="every one of the 5 generator updates was non-finite"):
        Trainer(obj, cfg, tmp_path).fit()


def test_a_second_run_in_a_running_runs_folder_is_refused(tmp_path):
    # long enough that the second command (a fresh interpreter importing torch, 2-3 s) meets the first still running
    data = {**TOY, "train": {**TOY["train"], "steps": 1500, "checkpoint_every": 250, "log_every": 10}}
    cfg = write(tmp_path / "toy.yaml", data)
    run = tmp_path / "run"
    first = subprocess.Popen(command(cfg, run), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not (run / "log.csv").is_file():
            time.sleep(0.05)
            assert first.poll() is None, first.communicate()
        second = subprocess.run(command(cfg, run), env=ENV, capture_output=True, text=True, timeout=120)
        lines = second.stderr.strip().splitlines()
        assert second.returncode == 2 and len(lines) == 1, second.stderr
        assert f"is in use by process {first.pid}" in lines[0]
        assert first.poll() is None  # the first run goes on
    finally:
        out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert logged_steps(run) == list(range(10, 1501, 10))  # unharmed: each step once
    # the lock died with its holder: a new run in the folder starts at once (here: resumes, already done)
    assert subprocess.run(command(cfg, run), env=ENV, capture_output=True, timeout=300).returncode == 0


def test_a_resume_that_changes_the_math_is_refused(tmp_path, capsys):
    cfg = write(tmp_path / "toy.yaml", {**TOY, "train": {**TOY["train"], "steps": 4}})
    run = tmp_path / "run"
    assert main(["distill", str(cfg), "--out", str(run)]) == 0
    before = hashlib.sha256((run / "config.yaml").read_bytes()).hexdigest()
    capsys.readouterr()
    args = ["distill", str(cfg), "--out", str(run), "--set", "train.steps=6"]
    assert main(args + ["--set", "distill.divergence={name: sim}", "--set", "train.batch_size=16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "would change what it trains" in err[0], err
    assert "distill.divergence.name: 'sid' -> 'sim'" in err[0] and "train.batch_size: 32 -> 16" in err[0]
    assert hashlib.sha256((run / "config.yaml").read_bytes()).hexdigest() == before  # a failed start: untouched
    assert main(args) == 0  # more steps (and other cadence or evaluation keys) resume as they are, said
    assert f"resuming {run} from step 4 (train.steps: 4 -> 6)" in capsys.readouterr().out
    assert logged_steps(run) == list(range(1, 7))
    capsys.readouterr()
    assert main(["distill", str(cfg), "--out", str(run), "--set", "train.steps=8", "--set",
                 "distill.divergence={name: sid, alpha: 1.2, weighting: sigma4}", "--resume-changed"]) == 0
    assert "resuming under a changed config: distill.divergence.alpha: 1.0 -> 1.2" in capsys.readouterr().out
