"""Time per iteration of the engine's loop (Trainer.train_step: aux update, generator update,
all bookkeeping) against a minimal hand-written PyTorch loop doing the same math on the same
networks: SiD on the 8-mode ring, one fake-score update per generator update, Adam, grad clipping,
EMA. Blocks of iterations alternate A/B in one run; the medians are compared.

    python benchmarks/overhead.py [--iters 40 --rounds 15]

`--sharded`: replicated vs sharded (`train.parallel: replicated` vs `fsdp`) on 2 CPU processes (gloo), time per
iteration measured alternately in one run. The script re-launches itself under
`torchrun --standalone --nproc_per_node 2`; each process builds both trainers from the same config (default
examples/image/digits_sim.yaml; examples/toy/ring8_sid.yaml via --config), and a block's time is the slowest
process's.

    python benchmarks/overhead.py --sharded [--iters 10 --rounds 9 --config PATH]

`--out PATH` writes the JSON there instead of benchmarks/results/ and leaves docs/results.md alone.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, replace_section, write_result

from unidistill.engine.cli import load_run_config
from unidistill.engine.trainer import Trainer

CONFIG = Path(__file__).resolve().parents[1] / "examples" / "toy" / "ring8_sid.yaml"
SHARDED_CONFIG = Path(__file__).resolve().parents[1] / "examples" / "image" / "digits_sim.yaml"


def engine_setup(out: Path, device: torch.device | str = "cpu"):
    """A trainer for CONFIG on `device` (its type becomes train.device), and the run config."""
    run = load_run_config(CONFIG, ["train.progress=false", f"train.device={torch.device(device).type}"])
    return Trainer(run.backend.build(run.cfg, out), run.train, out), run.cfg


def hand_loop(obj, train, cfg, device: torch.device | str = "cpu"):
    """The same math written directly (SiD loss with the config's alpha and sigma4 weighting, the
    config's lognormal time samplers, EDM-weighted DSM for the fake, AdamW, clipping, EMA). `device` is
    where obj's networks are (the trainer's device); every draw is made there."""
    G, F, teacher, p = obj.modules["generator"], obj.modules["fake"], obj.teacher, obj.process
    lr = train.lr
    opt_g = torch.optim.AdamW(G.parameters(), lr=lr["generator"], betas=tuple(train.betas), weight_decay=0.0)
    opt_f = torch.optim.AdamW(F.parameters(), lr=lr["fake"], betas=tuple(train.betas), weight_decay=0.0)
    live = list(G.parameters())
    ema = [v.detach().clone() for v in live]
    n, alpha, clip = train.batch_size, cfg.distill.divergence["alpha"], train.grad_clip
    assert cfg.distill.divergence.get("weighting") == "sigma4", "the hand loop writes out sigma4 weighting"
    latent = next(G.parameters()).shape[1]
    ts, ats = cfg.distill.time_sampler, cfg.distill.aux_time_sampler

    def lognormal(m, s):
        return torch.exp(s["p_mean"] + s["p_std"] * torch.randn(m, device=device)).clamp(p.t_min, p.t_max)

    def step():
        # fake score: denoising score matching on detached generator samples
        G.requires_grad_(False)
        F.requires_grad_(True)
        with torch.no_grad():
            x0 = G(torch.randn(n, latent, device=device), None)
        t = lognormal(n, ats)
        x_t = x0 + t[:, None] * torch.randn_like(x0)
        loss_f = (obj.fake_weight(t, p) * ((F(x_t, t, None) - x0) ** 2).mean(1)).mean()
        opt_f.zero_grad(set_to_none=True)
        loss_f.backward()
        torch.nn.utils.clip_grad_norm_(F.parameters(), clip)
        opt_f.step()
        # generator: SiD loss with gradients through x_t into both (frozen) networks
        G.requires_grad_(True)
        F.requires_grad_(False)
        x0 = G(torch.randn(n, latent, device=device), None)
        t = lognormal(n, ts)
        eps = torch.randn_like(x0)
        a, b = p.alpha(t)[:, None], p.sigma(t)[:, None]
        x_t = a * x0 + b * eps
        d_p, d_q = teacher(x_t, t, None), F(x_t, t, None)
        y = a * (d_p - d_q) / b**2
        s_q = (a * d_q - x_t) / b**2
        per = (y * (s_q + eps / b)).sum(1) + (1 - alpha) * (y**2).sum(1)
        loss_g = (b.squeeze(1) ** 4 / a.squeeze(1) ** 2 * per).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        torch.nn.utils.clip_grad_norm_(G.parameters(), clip)
        opt_g.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema, live, 1 - train.ema_decay)

    return step


def wall_seconds(block: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    block()
    return time.perf_counter() - t0


def alternate(fns: dict[str, Callable[[], object]], rounds: int, iters: int,
              seconds: Callable[[Callable[[], object]], float] = wall_seconds) -> dict[str, list[float]]:
    """Seconds per call of each fn, one value per round: every round times a block of `iters` calls of each
    fn with `seconds(block)`, in the reverse order every other round."""
    times = {name: [] for name in fns}
    order = list(fns)
    for r in range(rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            def block(fn=fns[name]):
                for _ in range(iters):
                    fn()

            times[name].append(seconds(block) / iters)
    return times


def save(name: str, result: dict, out: str | None) -> Path:
    """benchmarks/results/<name>.json, or `out` (same layout) when given."""
    if out is None:
        return write_result(name, result)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **result}, indent=1))
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=None, help="iterations per block (default 40; --sharded: 10)")
    ap.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 15; --sharded: 9)")
    ap.add_argument("--sharded", action="store_true", help="replicated vs fsdp on 2 CPU processes (torchrun)")
    ap.add_argument("--sharded-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--config", type=Path, default=SHARDED_CONFIG, help="run config for --sharded")
    ap.add_argument("--out", default=None, help="write the JSON here; docs/results.md is then left alone")
    args = ap.parse_args()
    if args.sharded_worker:
        return sharded_worker(args)
    if args.sharded:
        return launch_sharded(args)
    args.iters = 40 if args.iters is None else args.iters
    args.rounds = 15 if args.rounds is None else args.rounds
    with tempfile.TemporaryDirectory() as tmp:
        eng, cfg = engine_setup(Path(tmp) / "a")
        ref_trainer, _ = engine_setup(Path(tmp) / "b")  # separate networks of the same shape
        hand = hand_loop(ref_trainer.obj, ref_trainer.cfg, cfg)
        for _ in range(10):  # warm-up
            eng.train_step()
            hand()
        times = alternate({"engine": eng.train_step, "hand": hand}, args.rounds, args.iters)
    med = {k: statistics.median(v) for k, v in times.items()}
    overhead = med["engine"] / med["hand"] - 1
    result = {
        "what": f"ms per iteration (1 fake update + 1 generator update) of {CONFIG.name}: SiD, 8-mode ring, "
                f"batch {eng.cfg.batch_size}, MLP generator and fake 3x256",
        "engine_ms": 1e3 * med["engine"], "hand_ms": 1e3 * med["hand"], "overhead": overhead,
        "goal": "overhead <= 5%", "met": overhead <= 0.05,
        "rounds": args.rounds, "iters_per_round": args.iters,
        "engine_ms_all": [1e3 * v for v in times["engine"]], "hand_ms_all": [1e3 * v for v in times["hand"]],
    }
    path = save("overhead", result, args.out)
    if args.out is None:
        replace_section("overhead", "\n".join([
            "| loop | ms / iteration (median of rounds) |", "| --- | --- |",
            f"| engine (`Trainer.train_step`) | {result['engine_ms']:.2f} |",
            f"| hand-written PyTorch loop, same math and networks | {result['hand_ms']:.2f} |",
            "", f"Overhead {100 * overhead:.1f}% (goal: at most 5%; {args.rounds} alternating rounds of "
            f"{args.iters} iterations; {result['what']}).",
        ]))
    print(yaml.safe_dump({k: v for k, v in result.items() if not k.endswith("_all")}, sort_keys=False))
    print(f"wrote {path}")


# ---------------------------------------------------------------------- --sharded: replicated vs fsdp, 2 processes
def launch_sharded(args) -> None:
    """Re-run this script under torchrun with 2 processes; rank 0 reports."""
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).resolve()), "--sharded-worker", "--config", str(Path(args.config).resolve()),
           "--iters", str(10 if args.iters is None else args.iters),
           "--rounds", str(9 if args.rounds is None else args.rounds)]
    if args.out is not None:
        cmd += ["--out", str(Path(args.out).resolve())]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sys.exit(subprocess.run(cmd, env=env).returncode)


def sharded_setup(config: Path, parallel: str, out: Path):
    """A trainer with its own objective (built anew from the config) for `train.parallel = parallel`."""
    run = load_run_config(config, ["train.progress=false", "train.device=cpu", "train.threads=1",
                                   f"train.parallel={parallel}", "train.checkpoint_every=1000000000",
                                   "train.eval_every=0"])
    torch.set_num_threads(run.train.threads)
    trainer = Trainer(run.backend.build(run.cfg, out), run.train, out)
    trainer.obj.start()
    return trainer


def quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def sharded_worker(args) -> None:
    dist = torch.distributed
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {name: sharded_setup(args.config, kind, Path(tmp) / name)
                    for name, kind in (("replicated", "replicated"), ("sharded", "fsdp"))}
        rank, world = dist.get_rank(), dist.get_world_size()
        for _ in range(3):  # warm-up
            for t in trainers.values():
                t.train_step()
        times = {name: [] for name in trainers}
        order = list(trainers)
        for r in range(args.rounds):
            for name in order if r % 2 == 0 else order[::-1]:
                step = trainers[name].train_step
                dist.barrier()
                t0 = time.perf_counter()
                for _ in range(args.iters):
                    step()
                took = torch.tensor(time.perf_counter() - t0, dtype=torch.float64)
                dist.barrier()
                dist.all_reduce(took, op=dist.ReduceOp.MAX)  # the block lasts as long as its slowest process
                times[name].append(took.item() / args.iters)
        cfg = trainers["replicated"].cfg
        params = {k: sum(p.numel() for p in m.parameters()) for k, m in trainers["replicated"].obj.modules.items()}
        trainers["sharded"].end()  # waits for every process, then releases the process group
    if rank != 0:
        return
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["sharded"] / med["replicated"]
    per_round = [s / r for s, r in zip(times["sharded"], times["replicated"])]
    q1, q3 = quartiles(per_round)
    config = Path(args.config).resolve()
    try:
        config = config.relative_to(Path(__file__).resolve().parents[1])
    except ValueError:
        pass
    result = {
        "what": f"s per iteration (train_step: aux update(s) + generator update) of {config}, {world} CPU "
                f"processes (gloo, 1 thread each), global batch {cfg.batch_size}; trained parameters "
                + ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in params.items()),
        "config": str(config), "processes": world, "batch_size": cfg.batch_size,
        "replicated_s": med["replicated"], "sharded_s": med["sharded"],
        "ratio": ratio, "ratio_iqr": [q1, q3],
        "rounds": args.rounds, "iters_per_round": args.iters,
        "replicated_s_all": times["replicated"], "sharded_s_all": times["sharded"], "ratio_all": per_round,
    }
    path = save("overhead_sharded", result, args.out)
    table = [
        "| `train.parallel` | s / iteration (median of rounds, slowest process) |", "| --- | --- |",
        f"| replicated (one flat all-reduce) | {med['replicated']:.4f} |",
        f"| fsdp (FSDP2 `fully_shard`) | {med['sharded']:.4f} |",
        "", f"Sharded / replicated {ratio:.3f} (per-round ratios, interquartile range {q1:.3f} to {q3:.3f}; "
        f"{args.rounds} alternating rounds of {args.iters} iterations; {result['what']}).",
    ]
    if args.out is None:
        replace_section("overhead-sharded", "\n".join(table))
    print("\n".join(table))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
