"""benchmarks/gpu_check.py: every part that does not need CUDA, on the CPU with tiny sizes."""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import gpu_check
import overhead
import sd_shapes

CPU = torch.device("cpu")
# keys whose value is None on the CPU (no per-section memory counter there) or when xformers is absent
MAY_BE_NONE = {"peak_mem_mib", "allocated_before_mib", "xformers_version", "loss_scale"}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture
def no_result_file(monkeypatch):
    """Fail if anything tries to write benchmarks/results/gpu.json."""
    def refuse(*a, **k):
        raise AssertionError("benchmarks/results/gpu.json must not be written here")

    monkeypatch.setattr(gpu_check, "write_result", refuse)


def numbers_finite(x, key=""):
    """Every number in a JSON value is finite; None only where allowed."""
    if x is None:
        assert key in MAY_BE_NONE, f"{key} is None"
    elif isinstance(x, bool | str):
        pass
    elif isinstance(x, int | float):
        assert math.isfinite(x), f"{key} = {x}"
    elif isinstance(x, dict):
        for k, v in x.items():
            numbers_finite(v, k)
    elif isinstance(x, list):
        for v in x:
            numbers_finite(v, key)
    else:
        raise AssertionError(f"{key}: unexpected {type(x).__name__}")


# ------------------------------------------------------------------ timer and memory helpers
class FakeEvent:
    made: list[FakeEvent] = []

    def __init__(self, enable_timing=False):
        assert enable_timing
        self.recorded = self.waited = False
        FakeEvent.made.append(self)

    def record(self, stream=None):
        self.recorded = True

    def synchronize(self):
        self.waited = True

    def elapsed_time(self, end):
        assert self.recorded and end.recorded and end.waited
        return 250.0  # milliseconds


def fake_cuda(monkeypatch):
    FakeEvent.made = []
    calls = []
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append("sync"))
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: "stream")
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: calls.append("reset"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 3 * 2**20)
    return calls


def test_timer_uses_cuda_events_only_on_cuda(monkeypatch):
    calls = fake_cuda(monkeypatch)
    with gpu_check.Timer(torch.device("cuda", 0)) as t:
        pass
    assert t.uses_events and len(FakeEvent.made) == 2 and calls == ["sync"]
    assert t.seconds == pytest.approx(0.25)  # elapsed_time's milliseconds, in seconds

    FakeEvent.made = []
    with gpu_check.Timer(CPU) as t:
        sum(range(1000))
    assert not t.uses_events and FakeEvent.made == [] and calls == ["sync"]
    assert 0 <= t.seconds < 1


def test_peak_memory_reads_cuda_counters_only_on_cuda(monkeypatch):
    calls = fake_cuda(monkeypatch)
    m = gpu_check.PeakMemory("cuda")
    m.reset()
    assert m.mib() == 3.0 and calls == ["reset"]
    m = gpu_check.PeakMemory(CPU)
    m.reset()
    assert m.mib() is None and calls == ["reset"]


# ------------------------------------------------------------------ command line
def test_no_cuda_skips_cleanly(monkeypatch, capsys, tmp_path, no_result_file):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for argv in ([], ["--device", "cuda"], ["--quick", "--out", str(tmp_path / "gpu.json")]):
        assert gpu_check.main(argv) == 0
        out = capsys.readouterr().out.strip().splitlines()
        assert out == [gpu_check.SKIP_LINE]
        assert "no CUDA device" in out[0] and "nothing was measured" in out[0]
    assert not (tmp_path / "gpu.json").exists()


def test_cpu_needs_quick_and_sections_are_checked(capsys, no_result_file):
    assert gpu_check.main(["--device", "cpu"]) == 2
    assert "--quick" in capsys.readouterr().out
    assert gpu_check.main(["--device", "cpu", "--quick", "--sections", "attention,nope"]) == 2
    assert "nope" in capsys.readouterr().out


def test_quick_without_out_writes_nothing(capsys, no_result_file):
    assert gpu_check.main(["--device", "cpu", "--quick", "--sections", "attention"]) == 0
    assert "nothing written" in capsys.readouterr().out


# ------------------------------------------------------------------ sections
def test_attention_dispatch_agrees_with_sdpa_on_cpu():
    r = gpu_check.attention_section(CPU, quick=True)
    assert r["all_agree"] and r["cases"]
    assert {(c["dtype"], c["mask"]) for c in r["cases"]} == {(d, m) for d in ("float32", "bfloat16")
                                                           for m in (False, True)}
    for c in r["cases"]:
        assert c["dispatch_path"] == "sdpa"  # xformers is CUDA-only
        assert c["out_max_abs_diff"] == 0 and c["grad_q_max_abs_diff"] == 0
        # the float32 reference is close to both, within the dtype's tolerance
        assert c["sdpa_vs_fp32"] <= c["tolerance"] * 10
    numbers_finite(r)


def test_attention_disagreement_is_caught(monkeypatch):
    attn = __import__("unidistill.engine.nn.attention", fromlist=["attention"])
    real = attn.attention
    monkeypatch.setattr(attn, "attention", lambda q, k, v, mask=None: 1.5 * real(q, k, v, mask))
    c = gpu_check.compare_attention((2, 2, 8, 4), torch.float32, True, CPU, iters=1, rounds=1, warmup=0)
    assert not c["agree"] and c["out_max_abs_diff"] > c["tolerance"]
    with pytest.raises(AssertionError, match="both are SDPA"):
        gpu_check.attention_section(CPU, quick=True)


def test_key_padding_mask_never_masks_a_whole_row():
    m = gpu_check.key_padding_mask(9, 16, CPU)
    assert m.shape == (9, 1, 1, 16) and m.dtype == torch.bool
    assert m.any(-1).all() and not m.all(-1).all()


def test_training_run_on_cpu():
    r = gpu_check.training_section(CPU, quick=True, precisions=("bf16",), names=("image",))
    run = r["runs"]["image_bf16"]
    assert "error" not in run, run
    assert run["losses_finite"] and run["generator_autocast"] == ["bfloat16"] and run["autocast_as_requested"]
    assert run["images_per_s"] == pytest.approx(run["batch_size"] / run["s_per_step"])
    assert len(run["s_per_step_all"]) == run["timed_steps"]
    numbers_finite(r)


def test_overhead_on_cpu():
    r = gpu_check.overhead_section(CPU, quick=True)
    assert r["device"] == "cpu" and r["engine_ms"] > 0 and r["hand_ms"] > 0 and r["ratio_median"] > 0
    assert len(r["engine_ms_all"]) == len(r["hand_ms_all"]) == r["rounds"]
    numbers_finite(r)


def test_overhead_is_timed_by_the_device_timer(monkeypatch):
    """Every block of the overhead comparison goes through Timer (CUDA events on a GPU) on the run's device."""
    blocks = []

    class Fixed(gpu_check.Timer):
        def __exit__(self, *exc):
            blocks.append(self.device)
            self.seconds = 0.004
            return False

    monkeypatch.setattr(gpu_check, "Timer", Fixed)
    r = gpu_check.overhead_section(CPU, quick=True)
    assert blocks == [CPU] * (2 * r["rounds"])
    assert r["engine_ms"] == r["hand_ms"] == pytest.approx(4.0 / r["iters_per_round"])


def test_hand_loop_draws_on_the_requested_device(monkeypatch, tmp_path):
    """overhead.hand_loop passes its device to every torch.randn it makes (the networks' device on a GPU)."""
    trainer, cfg = overhead.engine_setup(tmp_path, CPU)
    assert trainer.acc.device.type == "cpu"
    step = overhead.hand_loop(trainer.obj, trainer.cfg, cfg, CPU)
    real, devices = torch.randn, []

    def randn(*size, **kwargs):
        devices.append(kwargs.get("device"))
        return real(*size, **kwargs)

    monkeypatch.setattr(torch, "randn", randn)
    step()
    assert devices and all(d == CPU for d in devices), devices


def test_alternate_reverses_the_order_every_other_round():
    calls = []
    times = overhead.alternate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3, iters=2,
                               seconds=lambda block: block() or 0.5)
    assert "".join(calls) == "aabb" "bbaa" "aabb"
    assert times == {"a": [0.25] * 3, "b": [0.25] * 3}


def test_sd_teacher_folder_loads_through_the_image_backend(tmp_path):
    from unidistill.modalities.shared.teacher import load_teacher

    folder = sd_shapes.write_sd_teacher(tmp_path / "sd", sd_shapes.QUICK_UNET, sd_shapes.QUICK_TEXT)
    t = load_teacher(folder, guidance_scale=4.5, prompts=["a photo of a cat", "a lighthouse"])
    assert t.shape == (4, 8, 8) and t.denoiser.num_conds == 2
    assert t.denoiser.cond_table.shape == (3, sd_shapes.TEXT_TOKENS, sd_shapes.QUICK_TEXT["hidden_size"])


def test_sd_retries_after_running_out_of_memory(monkeypatch):
    """An out-of-memory attempt is recorded and the next rung (activation checkpointing) runs."""
    real, seen = gpu_check.engine_steps, []

    def steps(config, overrides, device, **kw):
        seen.append(overrides)
        if len(seen) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(config, overrides, device, **kw)

    monkeypatch.setattr(gpu_check, "engine_steps", steps)
    r = gpu_check.sd_section(CPU, quick=True)
    assert len(seen) == 2 and "train.activation_checkpointing=true" in seen[1]
    assert r["activation_checkpointing"] and r["losses_finite"]
    assert r["out_of_memory_attempts"] == [{"batch_size": 2, "activation_checkpointing": False,
                                            "error": "out of memory: CUDA out of memory. Tried to allocate 2.00 GiB"}]


@pytest.mark.slow
def test_quick_check_writes_every_section(tmp_path, capsys, no_result_file):
    out = tmp_path / "gpu.json"
    assert gpu_check.main(["--device", "cpu", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert set(gpu_check.SECTIONS) <= set(data) and data["quick"] and data["problems"] == []
    numbers_finite(data)
    assert data["attention"]["all_agree"]
    runs = data["training"]["runs"]
    assert set(runs) == {"image_bf16", "image_fp16", "text_bf16", "text_fp16"}
    for key, run in runs.items():
        assert "error" not in run, (key, run)
        assert run["losses_finite"] and run["autocast_as_requested"], (key, run)
        assert run["s_per_step"] > 0
    assert runs["image_fp16"]["loss_scale"] is not None  # fp16 keeps a loss scale per module
    sd = data["sd"]
    assert sd["losses_finite"] and sd["images_per_s"] > 0 and sd["generator_autocast"] == ["bfloat16"]
    assert data["overhead"]["ratio_median"] > 0
    for name in gpu_check.SECTIONS:
        assert f"== {name}" in printed
