"""One-command GPU check (issue 18, item 5): on one CUDA device, in a few minutes,

  1. attention: the engine's dispatch (xformers for CUDA fp16/bf16 when it imports) against PyTorch SDPA:
     largest differences of outputs and of the gradients, forward+backward time of each;
  2. training steps of an image (digits SIM) and a text (DiDi-Instruct) distillation through the engine in
     bf16 and fp16: seconds per step, samples per second, peak memory, finite losses, skipped steps;
  3. an SD-1.5-shaped latent distillation (random weights, two-step student, SIM) through the image backend;
  4. the engine's per-iteration overhead against a hand-written loop (benchmarks/overhead.py) on the device.

    python benchmarks/gpu_check.py [--device cuda] [--quick] [--out PATH] [--sections attention,training,sd,overhead]

A full run on CUDA writes benchmarks/results/gpu.json (or --out). Without a CUDA device it prints one line,
measures nothing and exits 0. `--device cpu --quick` runs every section with tiny sizes on the CPU, so the
tests can exercise all of it; quick runs write a result file only when --out is given. Nothing is downloaded:
the SD-shaped teacher is written from configs with random weights into a temporary folder.
Exit status: 0 when every section ran and the attention paths agree, 1 otherwise, 2 for a refused command.
"""
from __future__ import annotations

import argparse
import gc
import importlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the SD-shaped teacher is built locally; never reach the hub

import torch
import torch.nn.functional as F
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_result
from sd_shapes import QUICK_TEXT, QUICK_UNET, SD_TEXT, SD_UNET, TEXT_TOKENS, write_sd_teacher

REPO = Path(__file__).resolve().parents[1]
IMAGE_CONFIG = REPO / "examples" / "image" / "digits_sim.yaml"
TEXT_CONFIG = REPO / "examples" / "text" / "pydoc_didi.yaml"
SD_CONFIG = REPO / "examples" / "image" / "sd_sim.yaml"
SECTIONS = ("attention", "training", "sd", "overhead")
SKIP_LINE = "gpu_check: no CUDA device found (torch.cuda.is_available() is False); nothing was measured"


# ---------------------------------------------------------------------------------------------- measuring
class Timer:
    """Seconds taken by the work inside `with Timer(device) as t: ...` (read t.seconds afterwards).

    On CUDA the block is bracketed by two CUDA events on the device's current stream: queued work is first
    synchronised so it is not counted, and the end event is waited for, so the time covers everything the
    block launched. On the CPU it is time.perf_counter."""

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.uses_events = self.device.type == "cuda"
        self.seconds = float("nan")

    def __enter__(self) -> Timer:
        if self.uses_events:
            torch.cuda.synchronize(self.device)
            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)
            self._start.record(torch.cuda.current_stream(self.device))
        else:
            self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> bool:
        if self.uses_events:
            self._end.record(torch.cuda.current_stream(self.device))
            self._end.synchronize()
            self.seconds = self._start.elapsed_time(self._end) / 1e3  # elapsed_time is in milliseconds
        else:
            self.seconds = time.perf_counter() - self._t0
        return False

    def measure(self, block: Callable[[], object]) -> float:
        """Seconds taken by block() (the `seconds` argument of overhead.alternate)."""
        with self:
            block()
        return self.seconds


class PeakMemory:
    """Peak MiB held by tensors on a CUDA device since reset(); None on the CPU (PyTorch keeps no such counter
    there, and the process's peak RSS would not be per section)."""

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def mib(self) -> float | None:
        return torch.cuda.max_memory_allocated(self.device) / 2**20 if self.cuda else None


def release(device: torch.device) -> None:
    """Drop what the previous measurement left, so the next one's peak memory starts clean."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def autocast_state(device_type: str) -> str:
    """The autocast dtype in force for `device_type` ("off" when autocast is not enabled)."""
    try:
        on, dtype = torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type)
    except TypeError:  # torch < 2.4 has only the per-device functions
        cuda = device_type == "cuda"
        on = torch.is_autocast_enabled() if cuda else torch.is_autocast_cpu_enabled()
        dtype = torch.get_autocast_gpu_dtype() if cuda else torch.get_autocast_cpu_dtype()
    return str(dtype).removeprefix("torch.") if on else "off"


# ---------------------------------------------------------------------------------------------- 1. attention
ATTENTION_SHAPES = [(8, 8, 1024, 64), (16, 16, 256, 64)]  # (B, H, L, D)
QUICK_ATTENTION_SHAPES = [(2, 2, 16, 8), (3, 2, 8, 4)]
# largest |difference| allowed between the two paths, relative to max(1, largest |float32 reference|)
TOLERANCE = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


def key_padding_mask(b: int, length: int, device: torch.device) -> torch.Tensor:
    """Bool (B, 1, 1, L), True = attend: example i attends to its first L - (i mod 4) * L/8 keys (never none,
    so no row is fully masked, where the kernels legitimately differ)."""
    keep = length - (torch.arange(b, device=device) % 4) * (length // 8)
    return (torch.arange(length, device=device)[None, :] < keep[:, None])[:, None, None, :]


def _sdpa(q, k, v, mask):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _forward_backward(fn: Callable, q, k, v, mask, grad_out) -> torch.Tensor:
    for t in (q, k, v):
        t.grad = None
    out = fn(q, k, v, mask)
    out.backward(grad_out)
    return out


def alternating_ms(device, fns: dict[str, Callable[[], object]], iters: int, rounds: int,
                   warmup: int) -> dict[str, list[float]]:
    """Milliseconds per call of each fn in each of `rounds` blocks of `iters` calls, the order alternating
    (benchmarks/overhead.py's alternate, timed by Timer(device)), after `warmup` calls of each."""
    from overhead import alternate

    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = alternate(fns, rounds, iters, seconds=Timer(device).measure)
    return {name: [1e3 * v for v in values] for name, values in times.items()}


def compare_attention(shape, dtype: torch.dtype, masked: bool, device: torch.device, *, iters: int = 10,
                      rounds: int = 5, warmup: int = 3) -> dict:
    """The engine's attention() against F.scaled_dot_product_attention on one (B, H, L, D) case."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    attn = importlib.import_module("unidistill.engine.nn.attention")
    gen = torch.Generator(device=device).manual_seed(0)
    q, k, v, grad_out = (torch.randn(shape, device=device, dtype=dtype, generator=gen) for _ in range(4))
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    mask = key_padding_mask(shape[0], shape[2], device) if masked else None
    path = "xformers" if attn._use_xformers(q) else "sdpa"
    paths = {"dispatch": attn.attention, "sdpa": _sdpa}
    out, grads = {}, {}
    for name, fn in paths.items():
        out[name] = _forward_backward(fn, q, k, v, mask, grad_out).detach().float()
        grads[name] = [t.grad.float() for t in (q, k, v)]
    # float32 reference (math kernel) to put the two paths' difference in scale
    q32, k32, v32 = (t.detach().float().requires_grad_() for t in (q, k, v))
    with sdpa_kernel(SDPBackend.MATH):
        ref = _forward_backward(_sdpa, q32, k32, v32, mask, grad_out.float()).detach()
    ref_grads = [t.grad for t in (q32, k32, v32)]

    def maxdiff(a, b):
        return (a - b).abs().max().item()

    out_diff = maxdiff(out["dispatch"], out["sdpa"])
    grad_diff = {n: maxdiff(a, b) for n, a, b in zip("qkv", grads["dispatch"], grads["sdpa"])}
    scale_out = max(1.0, ref.abs().max().item())
    scale_grad = max(1.0, max(g.abs().max().item() for g in ref_grads))
    tol = TOLERANCE[dtype]
    agree = out_diff <= tol * scale_out and max(grad_diff.values()) <= tol * scale_grad
    times = alternating_ms(device, {name: (lambda fn=fn: _forward_backward(fn, q, k, v, mask, grad_out))
                                    for name, fn in paths.items()}, iters, rounds, warmup)
    ms = {name: statistics.median(v) for name, v in times.items()}
    return {
        "shape": list(shape), "dtype": str(dtype).removeprefix("torch."), "mask": masked, "dispatch_path": path,
        "out_max_abs_diff": out_diff, "grad_q_max_abs_diff": grad_diff["q"],
        "grad_k_max_abs_diff": grad_diff["k"], "grad_v_max_abs_diff": grad_diff["v"],
        "dispatch_vs_fp32": maxdiff(out["dispatch"], ref), "sdpa_vs_fp32": maxdiff(out["sdpa"], ref),
        "grad_q_dispatch_vs_fp32": maxdiff(grads["dispatch"][0], ref_grads[0]),
        "grad_q_sdpa_vs_fp32": maxdiff(grads["sdpa"][0], ref_grads[0]),
        "tolerance": tol, "agree": agree,
        "dispatch_fwd_bwd_ms": ms["dispatch"], "sdpa_fwd_bwd_ms": ms["sdpa"],
        "speedup_dispatch_over_sdpa": ms["sdpa"] / ms["dispatch"],
    }


def attention_section(device: torch.device, quick: bool) -> dict:
    attn = importlib.import_module("unidistill.engine.nn.attention")
    xformers = attn._xformers_ops()
    version = None
    if xformers is not None:
        version = getattr(importlib.import_module("xformers"), "__version__", "unknown")
    cuda = device.type == "cuda"
    shapes = QUICK_ATTENTION_SHAPES if quick else ATTENTION_SHAPES
    dtypes = [torch.float16, torch.bfloat16] if cuda else [torch.float32, torch.bfloat16]
    timing = {"iters": 2, "rounds": 2, "warmup": 1} if quick else {"iters": 10, "rounds": 5, "warmup": 3}
    cases = []
    for shape in shapes:
        for dtype in dtypes:
            for masked in (False, True):
                case = guarded(compare_attention, shape, dtype, masked, device, **timing)
                if "error" in case:  # one failing kernel (say, xformers refusing a shape) leaves the others
                    case.update(shape=list(shape), dtype=str(dtype).removeprefix("torch."), mask=masked, agree=False)
                cases.append(case)
                release(device)
    for c in cases:
        if c.get("dispatch_path") == "sdpa":  # the dispatch took SDPA itself: the same kernel, the same numbers
            assert c["agree"], f"attention() and SDPA disagree on {c['shape']} {c['dtype']} though both are SDPA"
    return {
        "what": "engine attention() dispatch vs F.scaled_dot_product_attention, forward+backward on random q, k, v "
                "(with a bool key-padding mask: True = attend); differences are max |a - b| over all elements",
        "xformers_importable": xformers is not None, "xformers_version": version,
        "dispatch_paths": sorted({f"{c['dtype']}: {c.get('dispatch_path', 'error')}" for c in cases}),
        "all_agree": all(c["agree"] for c in cases), "cases": cases, **{f"timing_{k}": v for k, v in timing.items()},
    }


def print_attention(r: dict) -> None:
    print(f"xformers importable: {r['xformers_importable']} ({r['xformers_version']}); "
          f"dispatch: {', '.join(r['dispatch_paths'])}")
    rows = [[f"{tuple(c['shape'])}", c["dtype"], "yes" if c["mask"] else "no", "-", "-", "-", "-", "-",
             c["error"][:60]] if "error" in c else
            [f"{tuple(c['shape'])}", c["dtype"], "yes" if c["mask"] else "no", c["dispatch_path"],
             f"{c['out_max_abs_diff']:.2e}", f"{c['grad_q_max_abs_diff']:.2e}", f"{c['dispatch_fwd_bwd_ms']:.3f}",
             f"{c['sdpa_fwd_bwd_ms']:.3f}", "yes" if c["agree"] else "NO"] for c in r["cases"]]
    table(["shape (B,H,L,D)", "dtype", "mask", "dispatch", "|d out|", "|d grad q|", "dispatch ms", "sdpa ms",
           "agree"], rows)


# ---------------------------------------------------------------------------------------------- engine runs
def engine_steps(config: Path, overrides: list[str], device: torch.device, *, warmup: int, steps: int,
                 unit: str, expect_autocast: str | None = None) -> dict:
    """Build a run through the engine (as benchmarks/overhead.py does), run warm-up + timed train_step calls,
    and report seconds per step (median of the timed steps), samples per second, peak memory, finiteness
    of every logged loss and the trainer's skipped-step counts."""
    from unidistill.engine.cli import load_run_config
    from unidistill.engine.trainer import Trainer

    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        out = Path(tmp) / "run"
        t0 = time.perf_counter()
        run = load_run_config(config, [f"train.device={device.type}", "train.progress=false", *overrides])
        obj = run.backend.build(run.cfg, out)
        trainer = Trainer(obj, run.train, out)
        setup_s = time.perf_counter() - t0
        dev = trainer.acc.device
        seen: set[str] = set()
        hook = trainer.gen.register_forward_pre_hook(lambda m, a: seen.add(autocast_state(dev.type)))
        trainer.obj.start()  # as Trainer.fit does for a fresh run
        mem = PeakMemory(dev)
        before = torch.cuda.memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
        mem.reset()
        times, finite, skipped_in_warmup = [], True, {}
        try:
            for i in range(warmup + steps):
                if i == warmup:
                    skipped_in_warmup = dict(trainer.skipped)
                with Timer(dev) as t:
                    row = trainer.train_step()
                trainer.step += 1  # as Trainer.fit does after each step (schedules read it)
                losses = [v for k, v in row.items() if k.startswith("loss/")]
                finite = finite and all(bool(torch.isfinite(torch.as_tensor(v)).all()) for v in losses)
                if i >= warmup:
                    times.append(t.seconds)
        finally:
            hook.remove()
        # fp16: the trainer's dynamic loss scale per module (starts high and halves on each overflow, so a few
        # skipped warm-up steps are expected)
        scales = {k: float(v.scale) for k, v in getattr(trainer, "scales", {}).items()}
        s_per_step = statistics.median(times)
        result = {
            "config": str(config.relative_to(REPO)), "overrides": overrides, "device": str(dev),
            "batch_size": run.train.batch_size, "warmup_steps": warmup, "timed_steps": steps,
            "s_per_step": s_per_step, f"{unit}_per_s": run.train.batch_size / s_per_step,
            "s_per_step_all": times, "peak_mem_mib": mem.mib(), "allocated_before_mib": before,
            "generator_params_m": sum(p.numel() for p in trainer.gen.parameters()) / 1e6,
            "losses_finite": finite, "skipped": dict(trainer.skipped),
            "skipped_timed": {k: v - skipped_in_warmup.get(k, 0) for k, v in trainer.skipped.items()},
            "loss_scale": scales or None,
            "generator_autocast": sorted(seen), "setup_s": setup_s,
        }
        if expect_autocast is not None:
            result["autocast_as_requested"] = seen == {expect_autocast}
        del trainer, obj
    release(device)
    return result


def run_row(name: str, r: dict, unit: str) -> list[str]:
    if "error" in r:
        return [name, "-", "-", "-", "-", "-", "-", r["error"][:60]]
    mem = "-" if r["peak_mem_mib"] is None else f"{r['peak_mem_mib']:.0f}"
    return [name, ",".join(r["generator_autocast"]), f"{r['s_per_step']:.4f}", f"{r[f'{unit}_per_s']:.1f}", mem,
            "yes" if r["losses_finite"] else "NO",
            f"{sum(r['skipped'].values())} ({sum(r['skipped_timed'].values())} timed)", ""]


RUN_COLUMNS = ["run", "autocast", "s/step", "samples/s", "peak MiB", "finite", "skipped", "error"]


# ---------------------------------------------------------------------------------------------- 2. training
def training_section(device: torch.device, quick: bool, precisions=("bf16", "fp16"),
                     names=("image", "text")) -> dict:
    warmup, steps = (1, 2) if quick else (5, 20)
    runs = {
        "image": (IMAGE_CONFIG, "images", ["train.batch_size=8"] if quick else []),
        # the text backend draws its data-free real pool with the teacher on the CPU while building; a smaller
        # pool (sampled from each step, so the step's cost is unchanged) keeps the build short
        "text": (TEXT_CONFIG, "sequences", ["train.batch_size=8", "teacher_pool=8", "teacher_pool_steps=2"] if quick
                 else ["teacher_pool=64", "teacher_pool_steps=8"]),
    }
    out = {"what": "Trainer.train_step (aux + generator update) of the image and text distillation examples, "
                   f"{warmup} warm-up + {steps} timed steps; s_per_step is the median; generator_autocast is the "
                   "autocast dtype the generator's forward ran under", "runs": {}}
    for name in names:
        config, unit, extra = runs[name]
        for mp in precisions:
            key = f"{name}_{mp}"
            expect = {"bf16": "bfloat16", "fp16": "float16"}[mp]
            out["runs"][key] = guarded(engine_steps, config, [f"train.mixed_precision={mp}", *extra], device,
                                       warmup=warmup, steps=steps, unit=unit, expect_autocast=expect)
            out["runs"][key]["unit"] = unit
            release(device)
    return out


def print_runs(r: dict) -> None:
    table(RUN_COLUMNS, [run_row(k, v, v["unit"]) for k, v in r["runs"].items()])


# ---------------------------------------------------------------------------------------------- 3. SD-shaped
SD_STUDENT_SIGMAS = [14.6, 1.0]  # two steps: from pure noise at the top of SD's schedule, re-noised to sigma 1


def sd_section(device: torch.device, quick: bool, batch: int | None = None) -> dict:
    """The SD-shaped run at `batch` (default 2); when it runs out of device memory, again with
    train.activation_checkpointing, then at batch 1 with it (every attempt is recorded)."""
    batch = batch or 2
    warmup, steps = (1, 2) if quick else (2, 5)
    unet, text = (QUICK_UNET, QUICK_TEXT) if quick else (SD_UNET, SD_TEXT)
    ladder = list(dict.fromkeys([(batch, False), (batch, True), (1, True)]))
    attempts, result = [], None
    with tempfile.TemporaryDirectory(prefix="gpu_check_sd_") as tmp:
        t0 = time.perf_counter()
        folder = write_sd_teacher(Path(tmp) / "teacher", unet, text)
        write_s = time.perf_counter() - t0
        sigmas = ", ".join(map(str, SD_STUDENT_SIGMAS))
        for b, checkpointing in ladder:
            overrides = [f"teacher={folder}", "train.mixed_precision=bf16", f"train.batch_size={b}",
                         f"student_sigmas=[{sigmas}]"] + (["train.activation_checkpointing=true"] if checkpointing
                                                          else [])
            try:
                result = engine_steps(SD_CONFIG, overrides, device, warmup=warmup, steps=steps, unit="images",
                                      expect_autocast="bfloat16")
                result["activation_checkpointing"] = checkpointing
                result["overrides"][0] = "teacher=<temporary folder>"
            except (torch.cuda.OutOfMemoryError, MemoryError) as e:  # MemoryError: refused before allocating
                attempts.append({"batch_size": b, "activation_checkpointing": checkpointing,
                                 "error": f"out of memory: {str(e).strip().splitlines()[0]}"})
            release(device)  # after the except clause has dropped the failed attempt's frames
            if result is not None:
                break
    if result is None:
        raise torch.cuda.OutOfMemoryError(f"every SD-shaped attempt ran out of device memory: {attempts}")
    shipped = yaml.safe_load(SD_CONFIG.read_text())
    return {"what": f"{SD_CONFIG.name} ({shipped['distill']['divergence']['name']}, guidance "
                    f"{shipped['guidance_scale']}) on a random-weight SD-shaped teacher: UNet2DConditionModel "
                    f"{unet['block_out_channels']}, {unet['in_channels']}x{unet['sample_size']}x{unet['sample_size']} "
                    f"latents, {TEXT_TOKENS} text tokens of width {text['hidden_size']}; two-step student "
                    f"(sigmas {SD_STUDENT_SIGMAS}) and fake score copied from it; bf16 autocast",
            "write_teacher_s": write_s, "out_of_memory_attempts": attempts, **result}


# ---------------------------------------------------------------------------------------------- 4. overhead
def overhead_section(device: torch.device, quick: bool) -> dict:
    """benchmarks/overhead.py's comparison on `device`: its hand-written SiD loop and the engine on the same
    networks and config, blocks of iterations alternating A/B in one run, timed by Timer."""
    import overhead

    iters, rounds, warmup = (2, 2, 1) if quick else (40, 15, 10)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        eng, cfg = overhead.engine_setup(Path(tmp) / "a", device)
        ref, _ = overhead.engine_setup(Path(tmp) / "b", device)  # separate networks of the same shape
        dev = eng.acc.device
        hand = overhead.hand_loop(ref.obj, ref.cfg, cfg, dev)
        times = alternating_ms(dev, {"engine": eng.train_step, "hand": hand}, iters, rounds, warmup)
        batch = eng.cfg.batch_size
        del eng, ref, hand
    release(device)
    ratios = [e / h for e, h in zip(times["engine"], times["hand"])]
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"what": f"ms per iteration (1 fake + 1 generator update) of {overhead.CONFIG.name}, batch {batch}: "
                    "Trainer.train_step vs benchmarks/overhead.py's hand-written loop, same math and networks",
            "device": str(dev), "engine_ms": med["engine"], "hand_ms": med["hand"],
            "ratio_median": statistics.median(ratios), "overhead": statistics.median(ratios) - 1,
            "rounds": rounds, "iters_per_round": iters, "warmup_iters": warmup,
            "engine_ms_all": times["engine"], "hand_ms_all": times["hand"]}


def print_overhead(r: dict) -> None:
    table(["loop", "ms / iteration (median of rounds)"],
          [["engine (Trainer.train_step)", f"{r['engine_ms']:.3f}"], ["hand-written", f"{r['hand_ms']:.3f}"],
           ["median ratio engine / hand", f"{r['ratio_median']:.3f}"]])


# ---------------------------------------------------------------------------------------------- driver
def guarded(fn: Callable[..., dict], *args, **kwargs) -> dict:
    """fn(*args, **kwargs), or {"error": ...} with the traceback on stderr: one failing measurement does not
    stop the rest."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # includes torch.cuda.OutOfMemoryError: reported, and the next section still runs
        traceback.print_exc()
        return {"error": f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"}


def table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


def device_facts(device: torch.device) -> dict:
    if device.type != "cuda":
        return {"device": str(device)}
    p = torch.cuda.get_device_properties(device)
    return {"device": str(device), "name": p.name, "capability": f"{p.major}.{p.minor}",
            "memory_gib": p.total_memory / 2**30, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "bf16_supported": torch.cuda.is_bf16_supported()}


def finite_json(x):
    """Non-finite floats become None, so the file is strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite_json(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [finite_json(v) for v in x]
    return x


def problems_of(results: dict) -> list[str]:
    """What makes the check fail: a section (or run) that raised, attention paths that disagree."""
    found = []
    for name, r in results.items():
        if "error" in r:
            found.append(f"{name}: {r['error']}")
        for key, run in r.get("runs", {}).items():
            if "error" in run:
                found.append(f"{name}.{key}: {run['error']}")
        if name == "attention" and "all_agree" in r and not r["all_agree"]:
            found.append("attention: the dispatch and SDPA disagree beyond tolerance (see cases)")
    return found


def notes_of(results: dict) -> list[str]:
    """Findings worth a line that do not fail the check."""
    found = []
    runs = {**results.get("training", {}).get("runs", {}), "sd": results.get("sd", {})}
    for key, run in runs.items():
        if "error" in run or not run:
            continue
        if not run["losses_finite"]:
            found.append(f"{key}: non-finite losses")
        if sum(run["skipped_timed"].values()):
            found.append(f"{key}: non-finite (skipped) updates after warm-up: {run['skipped_timed']} "
                         f"(all steps: {run['skipped']}; loss scale now {run['loss_scale']})")
        if not run.get("autocast_as_requested", True):
            found.append(f"{key}: the generator ran under autocast {run['generator_autocast']}, not the requested "
                         "precision")
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and step counts (a smoke test of this script)")
    ap.add_argument("--out", type=Path, help="result file (default: benchmarks/results/gpu.json for a full CUDA run; "
                                             "quick runs write only with --out)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--sd-batch", type=int, default=None,
                    help="batch of the SD-shaped run (default 2; on running out of memory it retries with activation "
                         "checkpointing, then at batch 1)")
    args = ap.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        print(f"gpu_check: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print(SKIP_LINE)
        return 0
    if args.device == "cpu" and not args.quick:
        print("gpu_check: --device cpu runs only with --quick (full sizes are GPU sizes: the SD-shaped UNet alone "
              "would take hours on a CPU)")
        return 2
    device = torch.device("cuda", torch.cuda.current_device()) if args.device == "cuda" else torch.device("cpu")
    start = time.perf_counter()
    print(f"gpu_check on {device} ({'quick' if args.quick else 'full'}): {', '.join(sections)}", flush=True)
    runners = {"attention": (lambda: attention_section(device, args.quick), print_attention),
               "training": (lambda: training_section(device, args.quick), print_runs),
               "sd": (lambda: sd_section(device, args.quick, args.sd_batch),
                      lambda r: table(RUN_COLUMNS, [run_row("sd_bf16", r, "images")])),
               "overhead": (lambda: overhead_section(device, args.quick), print_overhead)}
    results: dict[str, dict] = {}
    for name in sections:
        run, show = runners[name]
        print(f"\n== {name}", flush=True)
        t0 = time.perf_counter()
        results[name] = guarded(run)
        results[name]["section_s"] = time.perf_counter() - t0
        if "error" in results[name]:
            print(f"{name} failed: {results[name]['error']}")
        else:
            show(results[name])
        sys.stdout.flush()
    problems, notes = problems_of(results), notes_of(results)
    data = finite_json({"device": device_facts(device), "quick": args.quick, "total_s": time.perf_counter() - start,
                        "problems": problems, "notes": notes, **results})
    path = None
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(json.dumps({"machine": machine(), **data}, indent=1, allow_nan=False))
        tmp.replace(args.out)
        path = args.out
    elif not args.quick:
        path = write_result("gpu", data)
    print()
    for line in notes:
        print(f"note: {line}")
    for line in problems:
        print(f"PROBLEM: {line}")
    print(f"{len(sections)} section(s) in {data['total_s']:.0f} s; " + (f"wrote {path}" if path else "nothing written"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
