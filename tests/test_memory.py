"""The memory estimate: saved bytes and static bytes against hand counts, the activation extrapolation
against a direct measurement, an estimate leaves the run bit for bit as it was, and `unidistill estimate`."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from unidistill.engine import memory
from unidistill.engine.cli import build_objective, load_run_config, main
from unidistill.engine.memory import Estimate, saved_bytes, static_bytes
from unidistill.engine.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")
RING = Path(__file__).parents[1] / "examples" / "toy" / "ring8_sid.yaml"
IMAGE = Path(__file__).parents[1] / "examples" / "image" / "digits_sim.yaml"
SMALL = ["train.progress=false", "train.device=cpu", "train.steps=3", "train.batch_size=64", "generator.hidden=32",
         "distill.fake.hidden=32"]


def toy_trainer(out: Path, overrides=()) -> Trainer:
    run = load_run_config(RING, SMALL + list(overrides))
    return Trainer(build_objective(run, out, "distill"), run.train, out)


@pytest.mark.parametrize("batch", [1, 5])
def test_saved_bytes_of_a_linear_relu_stack(batch):
    """Linear(4, 8) ReLU Linear(8, 3) ReLU, float32. Trained: the input (for W1's gradient) and both ReLU
    outputs (the second Linear's saved input is the first ReLU's output: one storage). Frozen with a gradient
    to the input: the ReLU outputs and both weights (for the input's gradient), but not the input."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3), nn.ReLU())
    x = torch.randn(batch, 4)
    out, saved = saved_bytes(lambda: net(x), exclude=net.parameters())
    assert saved == 4 * batch * (4 + 8 + 3)
    assert saved_bytes(lambda: net(x))[1] == saved + 4 * 8 * 3  # W2 (W1 only for a gradient to x)
    torch.testing.assert_close(out, net(x))
    net.requires_grad_(False)
    x.requires_grad_(True)
    assert saved_bytes(lambda: net(x), exclude=net.parameters())[1] == 4 * batch * (8 + 3)
    assert saved_bytes(lambda: net(x))[1] == 4 * batch * (8 + 3) + 4 * (8 * 4 + 3 * 8)
    with torch.no_grad():
        assert saved_bytes(lambda: net(x))[1] == 0


def test_saved_bytes_counts_a_storage_once():
    x = torch.randn(10, 10, requires_grad=True)
    assert saved_bytes(lambda: (x[:5] * x[5:]).sum())[1] == 400  # two views of x saved: one storage


def test_static_bytes_by_hand():
    """generator Linear(3, 4) with a buffer of 5 floats; fake Linear(4, 4) whose bias is frozen at hand-over;
    teacher Linear(4, 2) plus the generator's weight shared into it (counted once, with the generator)."""
    gen, fake, teacher = nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 2)
    gen.register_buffer("times", torch.zeros(5))
    fake.bias.requires_grad_(False)
    teacher.shared = nn.Linear(3, 4)
    teacher.shared.weight = gen.weight
    f = 4
    params = f * (12 + 4 + 5 + 16 + 4)
    trainable = f * (12 + 4 + 16)
    expected = {"parameters": params, "gradients": trainable, "optimizer": 2 * trainable, "ema": f * (12 + 4 + 5),
                "frozen": f * (8 + 2 + 4)}
    modules, frozen = {"generator": gen, "fake": fake}, {"teacher": teacher}
    assert static_bytes(modules, frozen) == expected
    halves = {k: (v + 1) // 2 for k, v in expected.items()}
    assert static_bytes(modules, frozen, shards=2) == {**halves, "frozen": expected["frozen"]}
    assert static_bytes(modules, frozen, shards=2, shard_frozen=True) == halves
    assert static_bytes(modules, frozen, mixed_precision="bf16") == expected
    with pytest.raises(ValueError, match="mixed_precision must be no, bf16 or fp16, got 'fp8'"):
        static_bytes(modules, frozen, mixed_precision="fp8")


def test_estimate_table_and_fits():
    e = Estimate(parameters=2**30, gradients=2**30, optimizer=2 * 2**30, ema=2**29, frozen=3 * 2**29,
                 activations=2**31, batch=64, device="cpu", free=8 * 2**30, held=2**30)
    # total 8 GiB; the peak to plan for counts the 2 GiB of activations twice: 10 GiB, 9 still to allocate
    assert e.total == 8 * 2**30 and e.peak == 10 * 2**30 and e.fits is False
    lines = e.table().splitlines()
    assert len(lines) == 11 and lines[7].split() == ["total", "8.00", "GiB"] and "activations at batch 64" in lines[6]
    assert lines[8].split()[-2:] == ["10.00", "GiB"] and lines[8].startswith("  peak to plan for")
    assert Estimate(**{**e.__dict__, "free": 9 * 2**30}).fits and Estimate(**{**e.__dict__, "free": None}).fits
    # checkpointing: backward also recomputes what was not kept, so the activations count three times
    assert Estimate(**{**e.__dict__, "checkpointing": True}).peak == 12 * 2**30
    assert e.error("try x").startswith("this run needs about 10.00 GiB per process on cpu (1.00 GiB of it already "
                                       "allocated) but 8.00 GiB are free; try x")


def test_check_static_refuses_in_one_line(monkeypatch):
    net = nn.Linear(1000, 1000)  # 4 MB of weights; with gradients, moments and EMA 20 MB
    monkeypatch.setattr(memory, "free_memory", lambda device=None: 2**20)
    with pytest.raises(MemoryError) as info:
        memory.check_static({"generator": net}, {}, "cpu")
    assert str(info.value) == ("the networks need about 0.02 GiB per process on cpu for weights, gradients, optimizer "
                               "state, the EMA and frozen networks (0.00 GiB of it already allocated) but 0.00 GiB are "
                               "free; try train.parallel=fsdp on more processes or smaller networks")
    monkeypatch.setattr(memory, "free_memory", lambda device=None: 17 * 2**20)  # 16 MB still to allocate
    memory.check_static({"generator": net}, {}, "cpu")


def test_estimate_does_not_change_the_run(tmp_path):
    """Estimate, then 3 steps: every weight, EMA value, optimizer moment, the noise stream and torch's RNG as
    without it."""
    states = []
    for probe in (False, True):
        trainer = toy_trainer(tmp_path / str(probe))
        loss = trainer.obj.generator_loss  # an objective that also draws from torch's generator (as dropout does)
        trainer.obj.generator_loss = lambda *a, loss=loss: (torch.rand(1), loss(*a))[1]
        if probe:
            assert memory.estimate(trainer).activations > 0
        for _ in range(3):
            trainer.train_step()
            trainer.step += 1
        states.append(trainer.state_tensors()[0])
    assert states[0].keys() == states[1].keys()
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k


@pytest.mark.parametrize("modality", ["toy", "image"])
def test_activation_extrapolation_matches_a_direct_measurement(modality, tmp_path):
    """From batches 1 and 2 to 8, against a measurement at 8: the toy MLPs and a tiny digits UNet (SIM)."""
    if modality == "toy":
        trainer = toy_trainer(tmp_path, ["train.batch_size=8"])
    else:
        from image_fixtures import tiny_digits_teacher

        run = load_run_config(IMAGE, [f"teacher={tiny_digits_teacher(tmp_path / 'teacher')}", *SMALL[:3],
                                      "train.batch_size=8"])
        trainer = Trainer(build_objective(run, tmp_path, "distill"), run.train, tmp_path)
    direct = memory.activation_bytes(trainer, sizes=(8, 9))  # measured at 8 itself
    assert direct > 0 and abs(memory.activation_bytes(trainer) - direct) <= 0.25 * direct


def test_estimate_command_prints_the_table_and_the_time(capsys):
    assert main(["estimate", str(RING), "--steps", "1", *sum((["--set", o] for o in SMALL), [])]) == 0
    out = capsys.readouterr().out
    for part in ("parameters (trained networks)", "optimizer state (AdamW moments)", "generator EMA",
                 "frozen networks", "activations at batch 64 per process", "total", "free on cpu", "time per step"):
        assert part in out, part


def test_estimate_command_refuses_a_run_that_does_not_fit(capsys, monkeypatch):
    """Free memory patched to 1 MiB: the networks fit (the static check passes), the batch's activations not."""
    monkeypatch.setattr(memory, "free_memory", lambda device=None: 2**20)
    args = ["estimate", str(RING), *sum((["--set", o] for o in [*SMALL, "train.batch_size=4096"]), [])]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("unidistill: error: this run needs about 0.0"), err
    assert err[0].endswith("but 0.00 GiB are free; try a smaller train.batch_size, train.activation_checkpointing=true "
                           "or train.parallel=fsdp on more processes")


def test_estimate_command_checks_steps(capsys):
    assert main(["estimate", str(RING), "--steps", "0"]) == 2
    assert capsys.readouterr().err.strip() == "unidistill: error: --steps must be >= 1, got 0"


def test_estimate_command_takes_a_teach_config(capsys):
    teach = str(IMAGE.with_name("digits_teacher.yaml"))
    small = ["network.block_out_channels=[8, 16]", "network.norm_num_groups=4", "train.batch_size=8",
             "train.threads=1", "train.device=cpu"]
    sets = sum((["--set", o] for o in small), [])
    assert main(["estimate", teach, "--teach", "--steps", "1", *sets]) == 0
    assert "activations at batch 8 per process" in capsys.readouterr().out
    assert main(["estimate", teach, *sets]) == 2
    assert capsys.readouterr().err.strip().endswith("digits_teacher.yaml is a `unidistill teach` config: add --teach)")
