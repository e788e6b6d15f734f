"""Reward alignment measured against the exact RLHF optimum p* ~ p exp(r / beta) (docs/methods.md section 6).

Toy part: a one-step SIM student of each exact mixture (the 8-mode ring, the 16-mode mixture in 8-D) is
distilled once; every objective then post-trains that student (train.init_from) on a linear and a quadratic
reward at two betas: DI++ (ikl + dipp, alpha = 1/beta), DI* (sim + dipp), DIDR with the Diffused Reward Proxy
(ikl and sim) and with the exact tilted score (sim), and Reward-Instruct (no divergence, output anchor). Each is
scored against exact samples of p*: energy distance next to its floor, the largest mode-weight error against
p*'s weights, the mean reward and the KL to the teacher (k-NN estimate) against the optimum's exact values.

Non-differentiable part: the binary reward `inside` (a disc around one ring mode), through the learned
surrogate and through REINFORCE at the same number of reward calls, against its exact optimum.

    python benchmarks/rewards.py [--quick] [--jobs 2] [--parts toy,binary]

Writes benchmarks/results/rewards.json, docs/img/rewards_*.png and the rewards section of docs/results.md.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import replace_section, write_result

from unidistill.engine.backend import get_backend
from unidistill.engine.config import TrainConfig, build
from unidistill.engine.metrics import energy_distance, gaussian_radius, kl_to, mode_report
from unidistill.engine.trainer import Trainer
from unidistill.modalities.toy_gmm.mixture import GaussianMixture
from unidistill.modalities.toy_gmm.rewards import optimum

ROOT = Path(__file__).resolve().parents[1]
N_EVAL = 4000
PROBLEMS = {"ring8": "ring8_sim", "mix16_8d": "mix16_8d_sim"}
REWARDS = {  # problem -> [(label, reward section, betas)]
    "ring8": [("linear x1", {"name": "linear", "w": [1.0, 0.0]}, [2.0, 4.0]),
              ("quadratic to (0, 4)", {"name": "quadratic", "lam": 1.0, "c": [0.0, 4.0]}, [8.0, 16.0])],
    "mix16_8d": [("linear x1", {"name": "linear", "w": [1.0] + [0.0] * 7}, [2.0, 4.0]),
                 ("quadratic to 0", {"name": "quadratic", "lam": 1.0, "c": [0.0] * 8}, [8.0, 16.0])],
}
OBJECTIVES = {  # name -> (divergence override or None (the base's), alignment; alpha = 1 / beta where used)
    "DI++ (ikl + dipp)": ({"name": "ikl", "weighting": "sigma2"}, {"name": "dipp"}),
    "DI* (sim + dipp)": (None, {"name": "dipp"}),
    "DIDR proxy (ikl)": ({"name": "ikl", "weighting": "sigma2"}, {"name": "didr", "proxy": "denoise"}),
    "DIDR proxy (sim)": (None, {"name": "didr", "proxy": "denoise"}),
    "DIDR exact (sim)": (None, {"name": "didr", "proxy": "exact"}),
    "Reward-Instruct": ({"name": "none"}, {"name": "reward_instruct", "anchor": "output", "weight": 1.0}),
}
SCRATCH = {  # rows distilled from scratch (the example's 8000 steps) instead of post-trained: does length matter?
    "DIDR exact (sim), from scratch": {"name": "didr", "proxy": "exact"},
    "DIDR proxy (sim), from scratch": {"name": "didr", "proxy": "denoise"},
}
SCRATCH_CASES = [("ring8", "linear x1", 2.0), ("ring8", "quadratic to (0, 4)", 8.0)]
BINARY = {"name": "inside", "center": [0.0, 4.0], "radius": 1.0}  # the mode at (0, 4) and its neighbourhood
BINARY_ALPHAS = [0.5, 2.0]
BASE_STEPS, ALIGN_STEPS = 4000, 1500


def example(name: str) -> dict:
    return yaml.safe_load((ROOT / "examples" / "toy" / f"{name}.yaml").read_text())


def distil(config: dict, out: Path) -> tuple[Trainer, float]:
    backend = get_backend(config["modality"])
    cfg = build(backend.Config, {k: v for k, v in config.items() if k not in ("modality", "train")}, "")
    train = build(TrainConfig, config["train"], "train")
    torch.manual_seed(train.seed)
    trainer = Trainer(backend.build(cfg, out), train, out)
    t0 = time.perf_counter()
    trainer.fit()
    return trainer, time.perf_counter() - t0


def base_config(problem: str, steps: int) -> dict:
    config = example(PROBLEMS[problem])
    config["train"].update({"steps": steps, "progress": False, "eval_every": 0, "checkpoint_every": 10**6,
                            "log_every": 100, "device": "cpu", "threads": 1})
    config["eval"] = {"n_samples": 200}
    return config


def samples(trainer: Trainer, n: int = N_EVAL) -> torch.Tensor:
    with trainer.ema_weights() as gen, torch.no_grad():
        z = torch.randn(n, gen.latent_dim, generator=torch.Generator().manual_seed(7))
        return gen(z, None).float()


def base_job(args) -> tuple[str, Path, float, torch.Tensor]:
    problem, steps, tmp = args
    torch.set_num_threads(1)
    out = Path(tmp) / f"base_{problem}"
    trainer, wall = distil(base_config(problem, steps), out)
    print(f"{problem}: base SIM student, {steps} steps, {wall:.0f} s", flush=True)
    return problem, out, wall, samples(trainer)


def align_config(problem: str, base: Path, reward: dict, alpha: float | None, beta: float, divergence,
                 alignment: dict, steps: int) -> dict:
    config = base_config(problem, steps)
    if divergence is not None:
        config["distill"]["divergence"] = copy.deepcopy(divergence)
    if divergence is not None and divergence["name"] == "none":
        config["distill"].pop("fake", None)
    config["distill"]["reward"] = {**reward, **({} if alpha is None else {"alpha": alpha})}
    config["distill"]["alignment"] = {**alignment, **({"beta": beta} if alignment["name"] == "didr" else {})}
    config["eval"]["beta"] = beta
    lr = {"generator": 2e-4, "fake": 2e-4}
    if alignment["name"] == "surrogate":
        lr["surrogate"] = 1e-3
    if divergence is not None and divergence["name"] == "none":
        lr.pop("fake")
    config["train"].update({"init_from": str(base), "lr": lr, "schedule": "cosine", "checkpoint_every": 10**6})
    return config


def score(mixture: GaussianMixture, x: torch.Tensor, reward, best: dict | None, radius: float) -> dict:
    """Energy to exact p* samples (and p*'s floor), mode weights against p*'s, mean reward, KL to the teacher."""
    out = {"reward": float(reward(x.double()).mean()), "kl_teacher": kl_to(x, mixture.log_prob), "off_mode": None}
    if best is not None:
        star = best["mixture"]
        g = torch.Generator().manual_seed(2024)
        target = star.sample(N_EVAL, generator=g)
        floor = sum(energy_distance(star.sample(N_EVAL, generator=g), target, unbiased=False) for _ in range(10)) / 10
        rep = mode_report(x, star.means.float(), star.weights.float(), radius)
        e = energy_distance(x, target, unbiased=False)
        out.update({"energy": e, "floor": floor, "energy_over_floor": e / floor, "modes_covered": rep.modes_covered,
                    "modes": rep.n_modes, "max_weight_error": float(rep.max_weight_error),
                    "off_mode": float(rep.off_mode)})
    return out


def reward_fn(mixture: GaussianMixture, section: dict):
    from unidistill.modalities.toy_gmm.rewards import rewards_for

    return rewards_for(mixture).get(section["name"])(**{k: v for k, v in section.items() if k != "name"})


def align_job(args) -> tuple:
    problem, base, label, reward, beta, objective, steps, tmp = args
    torch.set_num_threads(1)
    divergence, alignment = OBJECTIVES[objective]
    alpha = None if alignment["name"] == "didr" else 1.0 / beta
    config = align_config(problem, base, reward, alpha, beta, divergence, alignment, steps)
    slug = f"{problem}_{reward['name']}_{beta:g}_{list(OBJECTIVES).index(objective)}"
    trainer, wall = distil(config, Path(tmp) / slug)
    mixture = GaussianMixture.from_config(config["mixture"])
    best = optimum(mixture, reward, beta)
    x = samples(trainer)
    radius = gaussian_radius(float(mixture.stds.max()), mixture.dim)
    row = {**score(mixture, x, reward_fn(mixture, reward), best, radius), "train_s": wall, "steps": steps,
           "skipped": sum(trainer.skipped.values()), "config": config}
    print(f"{problem} {label} beta {beta:g} {objective}: energy {row['energy']:.4f} ({row['energy_over_floor']:.1f}x)"
          f", weight err {row['max_weight_error']:.3f}, reward {row['reward']:.3f} (opt {best['reward']:.3f}), "
          f"KL {row['kl_teacher']:.3f} (opt {best['kl']:.3f}), {wall:.0f} s", flush=True)
    return problem, label, beta, objective, row, x


def scratch_job(args) -> tuple:
    problem, label, beta, objective, steps, tmp = args
    torch.set_num_threads(1)
    reward = next(r for lab, r, _ in REWARDS[problem] if lab == label)
    config = base_config(problem, steps)
    config["distill"]["reward"] = dict(reward)
    config["distill"]["alignment"] = {**SCRATCH[objective], "beta": beta}
    config["eval"]["beta"] = beta
    trainer, wall = distil(config, Path(tmp) / f"scratch_{problem}_{reward['name']}_{list(SCRATCH).index(objective)}")
    mixture = GaussianMixture.from_config(config["mixture"])
    best = optimum(mixture, reward, beta)
    radius = gaussian_radius(float(mixture.stds.max()), mixture.dim)
    row = {**score(mixture, samples(trainer), reward_fn(mixture, reward), best, radius), "train_s": wall,
           "steps": steps, "skipped": sum(trainer.skipped.values()), "config": config}
    print(f"{problem} {label} beta {beta:g} {objective}: energy {row['energy']:.4f} ({row['energy_over_floor']:.1f}x), "
          f"weight err {row['max_weight_error']:.3f}, {wall:.0f} s", flush=True)
    return problem, label, beta, objective, row


def binary_optimum(mixture: GaussianMixture, beta: float, n: int = 2_000_000) -> dict:
    """p* ~ p (1 + (e^(1/beta) - 1) 1_D): Z = 1 + (e^(1/beta) - 1) P(D), E*[r] = e^(1/beta) P(D) / Z,
    KL = E*[r] / beta - log Z, with P(D) from n exact teacher samples."""
    x = mixture.sample(n, generator=torch.Generator().manual_seed(5))
    p_d = float(reward_fn(mixture, BINARY)(x.double()).mean())
    z = 1 + (math.exp(1 / beta) - 1) * p_d
    r = math.exp(1 / beta) * p_d / z
    return {"p_teacher": p_d, "reward": r, "kl": r / beta - math.log(z)}


def binary_job(args) -> tuple:
    base, method, alpha, steps, tmp = args
    torch.set_num_threads(1)
    alignment = {"name": "surrogate", "fit": "bce", "net": {"hidden": 128, "depth": 2}} if method == "surrogate" \
        else {"name": "reinforce", "std": 0.1}
    config = align_config("ring8", base, BINARY, alpha, 1 / alpha, None, alignment, steps)
    config["eval"].pop("beta")
    trainer, wall = distil(config, Path(tmp) / f"binary_{method}_{alpha:g}")
    mixture = GaussianMixture.from_config(config["mixture"])
    x = samples(trainer)
    radius = gaussian_radius(float(mixture.stds.max()), mixture.dim)
    row = {**score(mixture, x, reward_fn(mixture, BINARY), None, radius), "train_s": wall, "steps": steps,
           "reward_calls": steps * config["train"]["batch_size"], "config": config,
           "off_mode": float(mode_report(x, mixture.means.float(), mixture.weights.float(), radius).off_mode)}
    print(f"binary {method} alpha {alpha:g}: reward {row['reward']:.3f}, KL {row['kl_teacher']:.3f}, {wall:.0f} s",
          flush=True)
    return method, alpha, row, x


DIGITS_SWEEP = {  # objective -> (divergence override or None (SIM's), alignment, [(alpha, beta)])
    "SIM, no reward (base continued)": (None, None, [(None, None)]),
    "DI* (sim + dipp)": (None, {"name": "dipp"}, [(0.01, None), (0.03, None), (0.1, None)]),
    "DIDR proxy (sim)": (None, {"name": "didr", "proxy": "denoise"}, [(None, 3.0), (None, 1.0), (None, 0.3)]),
    "DIDR 4-step proxy (sim)": (None, {"name": "didr", "proxy": "denoise", "steps": 4}, [(None, 1.0)]),
    "Reward-Instruct": ({"name": "none"}, {"name": "reward_instruct", "anchor": "output", "weight": 1.0},
                        [(0.1, None), (0.3, None), (1.0, None)]),
}
DIGITS_BINARY = [("surrogate", {"name": "surrogate", "fit": "bce"}, 0.1),
                 ("reinforce", {"name": "reinforce", "std": 0.1}, 0.1)]
DIGITS_BASE_STEPS, DIGITS_STEPS = 1000, 300


def digits_run(name: str, out: Path, sets: list[str], config: str = "digits_sim") -> float:
    from unidistill.engine.cli import main as cli

    args = ["distill", str(ROOT / "examples" / "image" / f"{config}.yaml"), "--out", str(out)]
    for o in ["train.progress=false", "train.threads=1", "train.eval_every=0", "eval.n_samples=200", *sets]:
        args += ["--set", o]
    t0 = time.perf_counter()
    if cli(args) != 0:
        raise SystemExit(f"digits run {name} failed")
    return time.perf_counter() - t0


def digits_score(run: Path) -> dict:
    """digits-FID (1000 samples, classes cycling), class accuracy, mean log p(class | x), the loop rate."""
    from unidistill.engine import checkpoint as ckpt
    from unidistill.engine.cli import load_run_config
    from unidistill.modalities.image.rewards import has_loop
    from unidistill.modalities.shared.digits_eval import shipped_evaluator
    from unidistill.modalities.shared.student import draw_student

    loaded = load_run_config(run / "config.yaml")
    gen = loaded.backend.sampler(loaded.cfg, run).generator
    tensors, _ = ckpt.load_latest(run / "checkpoints")
    gen.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    gen.eval()
    with torch.no_grad():
        x, c = draw_student(gen, 1000, (1, 8, 8), 10, seed=0)
        ev = shipped_evaluator()
        out = ev(x, c)
        out["log_p_class"] = float(ev.classifier.log_prob(x.clamp(-1, 1), c).mean())
        out["loop_rate"] = float(has_loop(x).mean())
    return out


def digits_job(args) -> tuple:
    name, base, divergence, alignment, alpha, beta, reward, steps, tmp = args
    torch.set_num_threads(1)
    sets = [f"train.init_from={base}", f"train.steps={steps}", "train.checkpoint_every=1000000"]
    if divergence is not None:
        sets.append(f"distill.divergence={{name: {divergence['name']}}}")
        sets += ["distill.fake=null", "train.lr={generator: 2.0e-5}"]
    if alignment is not None:
        section = {"name": reward, **({"alpha": alpha} if alpha is not None else {})}
        sets.append("distill.reward=" + yaml.safe_dump(section, default_flow_style=True).strip())
        al = {**alignment, **({"beta": beta} if beta is not None else {})}
        sets.append("distill.alignment=" + yaml.safe_dump(al, default_flow_style=True).strip())
        if alignment["name"] == "surrogate":
            sets.append("train.lr={generator: 5.0e-5, fake: 5.0e-5, surrogate: 1.0e-3}")
    slug = "".join(ch if ch.isalnum() else "_" for ch in f"{name}_{alpha}_{beta}")
    out = Path(tmp) / f"digits_{slug}"
    wall = digits_run(name, out, sets)
    row = {**digits_score(out), "train_s": wall, "steps": steps, "alpha": alpha, "beta": beta, "overrides": sets}
    print(f"digits {name} alpha {alpha} beta {beta}: FID {row['digits_fid']:.2f}, log p {row['log_p_class']:.3f}, "
          f"loop {row['loop_rate']:.3f}, {wall:.0f} s", flush=True)
    return name, row


def digits_part(pool, tmp: str, quick: bool) -> dict:
    base = Path(tmp) / "digits_base"
    base_steps, steps = (3, 2) if quick else (DIGITS_BASE_STEPS, DIGITS_STEPS)
    wall = digits_run("base", base, [f"train.steps={base_steps}", "train.schedule=cosine"])
    result = {"base": {**digits_score(base), "train_s": wall, "steps": base_steps}, "sweep": {}, "binary": {},
              "steps": steps}
    jobs = [(n, base, d, a, al, be, "classifier", steps, tmp) for n, (d, a, grid) in DIGITS_SWEEP.items()
            for al, be in grid]
    jobs += [(n, base, None, a, al, None, "loop", steps, tmp) for n, a, al in DIGITS_BINARY]
    binary = {n for n, _, _ in DIGITS_BINARY}
    for name, row in pool.map(digits_job, jobs):
        (result["binary"] if name in binary else result["sweep"]).setdefault(name, []).append(row)
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a few steps, to check the script runs")
    ap.add_argument("--jobs", type=int, default=2, help="runs in parallel, one thread each")
    ap.add_argument("--parts", default="toy,scratch,binary,digits")
    ap.add_argument("--problems", default=",".join(PROBLEMS))
    ap.add_argument("--objectives", default=",".join(OBJECTIVES))
    ap.add_argument("--retable", action="store_true", help="rewrite the docs table from rewards.json")
    args = ap.parse_args()
    if args.retable:
        saved = json.loads((ROOT / "benchmarks" / "results" / "rewards.json").read_text())
        saved.pop("machine", None)
        saved["goal_met"] = goal_met(saved)
        write_result("rewards", saved)
        replace_section("rewards", table(saved))
        if "digits" in saved:
            digits_curve(saved["digits"], ROOT / "docs" / "img" / "rewards_digits.png")
        return
    parts, problems = args.parts.split(","), args.problems.split(",")
    objectives = [o for o in OBJECTIVES if o in args.objectives.split(",")]
    base_steps, steps = (30, 20) if args.quick else (BASE_STEPS, ALIGN_STEPS)
    result = {"goal": "DIDR reaches p* within 3x of the floor with every tilted weight within 0.02",
              "n_eval": N_EVAL, "jobs": args.jobs, "base_steps": base_steps, "align_steps": steps,
              "toy": {}, "binary": {}}
    pics: dict = {}
    with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(args.jobs) as pool:
        needed = set(problems if "toy" in parts else []) | ({"ring8"} if "binary" in parts else set())
        needed = needed if ("toy" in parts or "binary" in parts) else set()
        bases = {p: (out, wall, x) for p, out, wall, x in pool.map(base_job, [(p, base_steps, tmp) for p in needed])}
        jobs = []
        if "toy" in parts:
            for p in problems:
                mixture = GaussianMixture.from_config(example(PROBLEMS[p])["mixture"])
                for label, reward, betas in REWARDS[p]:
                    for beta in betas:
                        best = optimum(mixture, reward, beta)
                        star_x = best["mixture"].sample(N_EVAL, generator=torch.Generator().manual_seed(99))
                        radius = gaussian_radius(float(mixture.stds.max()), mixture.dim)
                        entry = result["toy"].setdefault(p, {}).setdefault(label, {}).setdefault(str(beta), {})
                        entry["optimum"] = {"reward": best["reward"], "kl": best["kl"],
                                            "weights": best["mixture"].weights.tolist()}
                        entry["exact p* samples"] = score(mixture, star_x, reward_fn(mixture, reward), best, radius)
                        entry["base student (no reward)"] = score(mixture, bases[p][2], reward_fn(mixture, reward),
                                                                  best, radius)
                        jobs += [(p, bases[p][0], label, reward, beta, o, steps, tmp) for o in objectives]
        for p, label, beta, objective, row, x in pool.map(align_job, jobs):
            result["toy"][p][label][str(beta)][objective] = row
            pics.setdefault((p, label, beta), {})[objective] = x
        if "scratch" in parts:
            scratch_steps = 30 if args.quick else example(PROBLEMS["ring8"])["train"]["steps"]
            sjobs = [(p, lab, beta, o, scratch_steps, tmp) for p, lab, beta in SCRATCH_CASES for o in SCRATCH]
            for p, label, beta, objective, row in pool.map(scratch_job, sjobs):
                result.setdefault("scratch", {}).setdefault(p, {}).setdefault(label, {})[str(beta)] = {
                    **result.get("scratch", {}).get(p, {}).get(label, {}).get(str(beta), {}), objective: row}
        if "binary" in parts:
            mixture = GaussianMixture.from_config(example("ring8_sim")["mixture"])
            for alpha in BINARY_ALPHAS:
                result["binary"][str(alpha)] = {"optimum": binary_optimum(mixture, 1 / alpha)}
            bjobs = [(bases["ring8"][0], m, a, steps, tmp) for a in BINARY_ALPHAS for m in ("surrogate", "reinforce")]
            for method, alpha, row, x in pool.map(binary_job, bjobs):
                result["binary"][str(alpha)][method] = row
                pics.setdefault(("binary", alpha), {})[method] = x
        if "digits" in parts:
            result["digits"] = digits_part(pool, tmp, args.quick)
    result["base_train_s"] = {p: w for p, (_, w, _) in bases.items()}
    old = ROOT / "benchmarks" / "results" / f"rewards{'_quick' if args.quick else ''}.json"
    if old.exists():  # the parts not rerun keep their last results
        previous = json.loads(old.read_text())
        for key, part in (("toy", "toy"), ("binary", "binary"), ("digits", "digits"), ("scratch", "scratch")):
            if part not in parts and key in previous:
                result[key] = previous[key]
        for key in ("base_steps", "align_steps", "base_train_s"):
            if "toy" not in parts and key in previous:
                result[key] = previous[key]
    result["goal_met"] = goal_met(result)
    suffix = "_quick" if args.quick else ""
    if "digits" in result:
        digits_curve(result["digits"], ROOT / "docs" / "img" / f"rewards_digits{suffix}.png")
    for key, group in pics.items():
        if key[0] == "ring8":
            picture(group, ROOT / "docs" / "img" / f"rewards_ring8_{key[1].split()[0]}_{key[2]:g}{suffix}.png")
    path = write_result("rewards" + suffix, result)
    if not args.quick:
        replace_section("rewards", table(result))
    print(f"wrote {path}")


DIGITS_MARGIN, DIGITS_FID_RATIO = 0.02, 1.1


def digits_goal(d: dict) -> tuple[bool, str]:
    """At least one rewarded row raises log p(class | x) by DIGITS_MARGIN over the unrewarded base at digits-FID
    within DIGITS_FID_RATIO of it; returns (met, the best such row's description)."""
    base = d["sweep"]["SIM, no reward (base continued)"][0]
    best = None
    for name, rows in d["sweep"].items():
        for row in rows:
            if row["alpha"] is None and row["beta"] is None:
                continue
            gain = row["log_p_class"] - base["log_p_class"]
            if row["digits_fid"] <= DIGITS_FID_RATIO * base["digits_fid"] and (best is None or gain > best[0]):
                knob = f"alpha {row['alpha']}" if row["alpha"] is not None else f"beta {row['beta']}"
                best = (gain, f"{name} ({knob}): log p +{gain:.3f} at "
                              f"digits-FID {row['digits_fid']:.2f} vs {base['digits_fid']:.2f}")
    return (best is not None and best[0] >= DIGITS_MARGIN), (best[1] if best else "no row within the FID margin")


def digits_curve(d: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=100)
    for name, rows in d["sweep"].items():
        ax.plot([r["digits_fid"] for r in rows], [r["log_p_class"] for r in rows], "o-", label=name, ms=4)
    base = d["sweep"]["SIM, no reward (base continued)"][0]["digits_fid"]
    ax.axvline(DIGITS_FID_RATIO * base, color="grey", ls=":", lw=1, label=f"{DIGITS_FID_RATIO}x base digits-FID")
    ax.set_xscale("log")
    ax.set_xticks([2, 3, 5, 10, 20], labels=["2", "3", "5", "10", "20"])
    ax.minorticks_off()
    ax.set(xlabel="digits-FID (lower is better, log scale)", ylabel="mean log p(class | x)",
           title="digits: reward against fidelity, one step")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def digits_table(d: dict) -> list[str]:
    b = d["base"]
    lines = [f"**Digits** (`examples/image/digits_sim.yaml`, {b['steps']} steps, then {d['steps']} steps of each "
             "objective from it with train.init_from; 1000 samples, classes cycling): the classifier reward "
             "log p(class | x) against digits-FID; the binary `loop` reward (a closed loop, no gradient) through the "
             f"surrogate and REINFORCE. The base student: digits-FID {b['digits_fid']:.2f}, log p "
             f"{b['log_p_class']:.3f}.", "",
             "| objective | alpha | beta | digits-FID | class acc. | log p(class \\| x) | loop rate | train s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for group in (d["sweep"], d["binary"]):
        for name, rows in group.items():
            for r in rows:
                lines.append(f"| {name} | {r['alpha'] if r['alpha'] is not None else '-'} "
                             f"| {r['beta'] if r['beta'] is not None else '-'} | {r['digits_fid']:.2f} "
                             f"| {r['class_accuracy']:.3f} | {r['log_p_class']:.3f} | {r['loop_rate']:.3f} "
                             f"| {r['train_s']:.0f} |")
    met, best = digits_goal(d)
    lines += ["", "![digits: reward against digits-FID](img/rewards_digits.png)", "",
              f"Digits goal (log p up by at least {DIGITS_MARGIN} at digits-FID within {DIGITS_FID_RATIO}x of the "
              f"unrewarded base): {'met' if met else 'not met'}; best: {best}.", ""]
    return lines


def goal_met(result: dict) -> dict:
    out = {}
    if "digits" in result:
        out["digits"] = digits_goal(result["digits"])[0]
    for p, by_reward in result["toy"].items():
        for label, by_beta in by_reward.items():
            for beta, rows in by_beta.items():
                extra = result.get("scratch", {}).get(p, {}).get(label, {}).get(beta, {})
                for name, row in {**rows, **extra}.items():
                    if name.startswith("DIDR"):
                        out[f"{p}/{label}/beta {beta}/{name}"] = (row["energy_over_floor"] <= 3
                                                                 and row["max_weight_error"] <= 0.02)
    return out


def picture(group: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(group)
    fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names), 2.8), dpi=90, squeeze=False)
    for ax, name in zip(axes.flat, names):
        x = group[name][:1500].numpy()
        ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.4, c="tab:red")
        ax.set(xlim=(-5.5, 5.5), ylim=(-5.5, 5.5), xticks=[], yticks=[], aspect="equal")
        ax.set_title(name, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def table(result: dict) -> str:
    lines = [f"One-step SIM students of the exact mixtures ({result['base_steps']} steps) post-trained for "
             f"{result['align_steps']} steps by each objective (train.init_from), alpha = 1/beta where a method "
             f"weighs a reward term. Scored on {result['n_eval']} samples against exact samples of "
             "p* ~ p exp(r/beta): energy distance and its two-sample floor, the largest mode-weight error "
             "against p*'s weights, mean reward and KL to the teacher (k-NN estimate; its error shows in the "
             "'exact p* samples' row) next to the optimum's exact values.", ""]
    for p, by_reward in result["toy"].items():
        for label, by_beta in by_reward.items():
            for beta, rows in by_beta.items():
                opt = rows["optimum"]
                lines += [f"**{p}, reward {label}, beta {beta}** (optimum: reward {opt['reward']:.3f}, "
                          f"KL {opt['kl']:.3f})", "",
                          "| objective | energy | x floor | max weight error | off-mode | reward | KL to teacher "
                          "| train s |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
                extra = result.get("scratch", {}).get(p, {}).get(label, {}).get(beta, {})
                for name, row in {**rows, **extra}.items():
                    if name == "optimum":
                        continue
                    lines.append(f"| {name} | {row['energy']:.4f} | {row['energy_over_floor']:.1f} "
                                 f"| {row['max_weight_error']:.3f} | {row['off_mode']:.3f} | {row['reward']:.3f} "
                                 f"| {row['kl_teacher']:.3f} | {row.get('train_s', 0):.0f} |")
                lines.append("")
    if result["binary"]:
        lines += ["**Binary reward** (ring8, r = 1 inside the disc of radius 1 around (0, 4), no gradient): the "
                  "learned surrogate against REINFORCE (std 0.1) at the same reward calls, against the exact "
                  "optimum at beta = 1/alpha.", "",
                  "| alpha | method | reward calls | P(inside) | optimum's | KL to teacher | optimum's | off-mode "
                  "| train s |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for alpha, rows in result["binary"].items():
            opt = rows["optimum"]
            for m in ("surrogate", "reinforce"):
                row = rows.get(m)
                if row:
                    lines.append(f"| {alpha} | {m} | {row['reward_calls']} | {row['reward']:.3f} | {opt['reward']:.3f}"
                                 f" | {row['kl_teacher']:.3f} | {opt['kl']:.3f} | {row['off_mode']:.3f} "
                                 f"| {row['train_s']:.0f} |")
        lines.append(f"\nThe teacher puts {next(iter(result['binary'].values()))['optimum']['p_teacher']:.3f} of its "
                     "mass inside the disc.")
    if "digits" in result:
        lines += [""] + digits_table(result["digits"])
    goals = {k: v for k, v in result["goal_met"].items() if k != "digits"}
    met = sum(goals.values())
    didr = [(row["max_weight_error"], row["energy_over_floor"], f"{p}, {label}, beta {beta}, {name}")
            for p, by_reward in result["toy"].items() for label, by_beta in by_reward.items()
            for beta, rows in by_beta.items()
            for name, row in {**rows, **result.get("scratch", {}).get(p, {}).get(label, {}).get(beta, {})}.items()
            if name.startswith("DIDR")]
    w, e, where = min(didr) if didr else (float("nan"), float("nan"), "-")
    e_best = min(didr, key=lambda r: r[1]) if didr else (float("nan"), float("nan"), "-")
    lines += ["", f"Goal check (DIDR within 3x of the floor with every weight within 0.02): {met} of {len(goals)} "
              f"DIDR rows meet it. Smallest weight error: {w:.3f} ({where}, {e:.1f}x the floor); closest to the "
              f"floor: {e_best[1]:.1f}x ({e_best[2]}, weight error {e_best[0]:.3f}).", "",
              f"Runs went {result['jobs']} at a time, one thread each; train s is wall time under that load."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
