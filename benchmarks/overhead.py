"""Time per iteration of the engine's loop (Trainer.train_step: aux update, generator update,
all bookkeeping) against a minimal hand-written PyTorch loop doing the same math on the same
networks: SiD on the 8-mode ring, one fake-score update per generator update, Adam, grad clipping,
EMA. Blocks of iterations alternate A/B in one run; the medians are compared.

    python benchmarks/overhead.py [--iters 40 --rounds 15]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import replace_section, write_result

from unidistill.engine.cli import load_run_config
from unidistill.engine.trainer import Trainer

CONFIG = Path(__file__).resolve().parents[1] / "examples" / "toy" / "ring8_sid.yaml"


def engine_setup(out: Path):
    run = load_run_config(CONFIG, ["train.progress=false", "train.device=cpu"])
    return Trainer(run.backend.build(run.cfg, out), run.train, out), run.cfg


def hand_loop(obj, train, cfg):
    """The same math written directly (SiD loss with the config's alpha and sigma4 weighting, the
    config's lognormal time samplers, EDM-weighted DSM for the fake, AdamW, clipping, EMA)."""
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
        return torch.exp(s["p_mean"] + s["p_std"] * torch.randn(m)).clamp(p.t_min, p.t_max)

    def step():
        # fake score: denoising score matching on detached generator samples
        G.requires_grad_(False)
        F.requires_grad_(True)
        with torch.no_grad():
            x0 = G(torch.randn(n, latent), None)
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
        x0 = G(torch.randn(n, latent), None)
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        eng, cfg = engine_setup(Path(tmp) / "a")
        ref_trainer, _ = engine_setup(Path(tmp) / "b")  # separate networks of the same shape
        hand = hand_loop(ref_trainer.obj, ref_trainer.cfg, cfg)
        for _ in range(10):  # warm-up
            eng.train_step()
            hand()
        times = {"engine": [], "hand": []}
        for r in range(args.rounds):
            order = [("engine", eng.train_step), ("hand", hand)]
            for name, fn in order if r % 2 == 0 else order[::-1]:
                t0 = time.perf_counter()
                for _ in range(args.iters):
                    fn()
                times[name].append((time.perf_counter() - t0) / args.iters)
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
    path = write_result("overhead", result)
    replace_section("overhead", "\n".join([
        "| loop | ms / iteration (median of rounds) |", "| --- | --- |",
        f"| engine (`Trainer.train_step`) | {result['engine_ms']:.2f} |",
        f"| hand-written PyTorch loop, same math and networks | {result['hand_ms']:.2f} |",
        "", f"Overhead {100 * overhead:.1f}% (goal: at most 5%; {args.rounds} alternating rounds of "
        f"{args.iters} iterations; {result['what']}).",
    ]))
    print(yaml.safe_dump({k: v for k, v in result.items() if not k.endswith("_all")}, sort_keys=False))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
