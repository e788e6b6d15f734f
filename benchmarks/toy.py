"""Toy benchmark: every continuous divergence's one-step student on exact Gaussian-mixture
teachers (an 8-mode 2-D ring with unequal weights, a 16-mode mixture in 8-D), next to the exact
teacher's own probability-flow sampler at 1, 4, 16 and 64 steps and the two-sample floor; and
DiDi-Instruct on an exact Markov chain, next to the teacher's own sampler.

The students are trained from the shipped configs in examples/toy/ (the 16-mode problem swaps in
the mixture of examples/toy/mix16_8d_sim.yaml), so the benchmark measures what users run; a method
name with `+` is a lever on top of a shipped config (LEVERS: its --set overrides).

Every sampler draws DRAWS x N_EVAL samples: the energy distance is the mean +- sd over DRAWS disjoint
parts, each against its own fresh target set, and the floor is fresh true samples under the same
protocol; mode coverage, weight errors and the off-mode share are over all samples.

    python benchmarks/toy.py [--quick] [--jobs 2] [--problems ring8] [--methods sim,ikl] [--merge]

Writes benchmarks/results/toy.json, docs/img/toy_*.png and the toy section of docs/results.md.
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
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
from unidistill.engine.metrics import Estimate, energy_draws, floor_draws, gaussian_radius, mode_report
from unidistill.engine.process import VEProcess
from unidistill.engine.sampling import ode_nfe, sample_ode
from unidistill.engine.trainer import Trainer
from unidistill.modalities.toy_gmm.mixture import ExactTeacher, GaussianMixture

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "toy"
N_EVAL = 2000  # samples per draw
DRAWS = 10  # disjoint draws per sampler
FLOOR_DRAWS = 50  # the floor is estimated once per problem: more draws for a tighter mean
TEACHER_STEPS = [1, 4, 16, 64]
METHODS = {  # benchmark name -> shipped config
    "ikl": "ring8_ikl", "dmd": "ring8_dmd", "sid": "ring8_sid", "sim": "ring8_sim", "fgm": "ring8_fgm",
    "fdiv_fkl": "ring8_fkl", "fdiv_js_datafree": "ring8_js_datafree", "uni_fkl": "ring8_uni",
}
WIDE = ["generator.hidden=512", "generator.depth=4"]
ADVERSARIAL = ["distill.adversarial={weight: 0.1}", "distill.real=teacher"]  # data-free: teacher ODE samples as real
LEVERS: dict[str, list[str]] = {  # "method+lever" -> overrides on the method's shipped config (key=value)
    "sim+wide": WIDE,  # generator 512 x 4 instead of 256 x 3
    "sim+adversarial": ADVERSARIAL,
    "sim+aux4": ["train.aux_steps=4"],  # two time scales: 4 fake-score updates per generator update
    "sid+karras": ["distill.time_sampler={name: karras, n_grid: null, u_max: 0.8}"],  # SiD's released draw
    "uni_fkl+released": ["distill.divergence={name: uni, f: fkl, form: released}", "distill.discriminator=null",
                         "train.lr={generator: 1.0e-3, fake: 1.0e-3}"],
    "sim+ema999": ["train.ema_decay=0.999"],
    "sim+latent2": ["latent_dim=2"],
}
GOAL = ["ikl", "sid", "sim", "fdiv_fkl"]
GOAL_FLOOR, GOAL_OFF_MODE = 2.0, 3.0  # within 2x the energy floor; off-mode share at most 3x the true samples'


def example(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())


PROBLEMS = {"ring8": example("ring8_sim")["mixture"], "mix16_8d": example("mix16_8d_sim")["mixture"]}
# the 8-D problem needs larger noise levels to move mass between far-apart modes: its VE-process
# methods take the time samplers of examples/toy/mix16_8d_sim.yaml
OVERRIDES = {"mix16_8d": {k: example("mix16_8d_sim")["distill"][k] for k in ("time_sampler", "aux_time_sampler")}}


def distil(config: dict, out: Path):
    """Train one config in-process (as `unidistill distill` does) and return (trainer, objective, seconds)."""
    backend = get_backend(config["modality"])
    cfg = build(backend.Config, {k: v for k, v in config.items() if k not in ("modality", "train")}, "")
    train = build(TrainConfig, config["train"], "train")
    torch.manual_seed(train.seed)
    obj = backend.build(cfg, out)
    trainer = Trainer(obj, train, out)
    t0 = time.perf_counter()
    trainer.fit()
    return trainer, obj, time.perf_counter() - t0


@functools.cache
def reference(problem: str) -> tuple:
    """(mixture, floor Estimate, mode radius): the floor is what a perfect sampler scores under the rows'
    protocol (fresh true sets against fresh target sets)."""
    mixture = GaussianMixture.from_config(PROBLEMS[problem])
    floor = floor_draws(target_of(mixture), N_EVAL, FLOOR_DRAWS, torch.Generator().manual_seed(2024))
    return mixture, floor, gaussian_radius(float(mixture.stds.max()), mixture.dim)


def target_of(mixture):
    return lambda n, g: mixture.sample(n, generator=g)


def gmm_row(problem: str, samples: torch.Tensor) -> dict:
    """Energy mean +- sd over DRAWS parts (the same target sets for every row), and the mode report."""
    mixture, floor, radius = reference(problem)
    rep = mode_report(samples, mixture.means.float(), mixture.weights.float(), radius)
    e = energy_draws(samples, target_of(mixture), DRAWS, torch.Generator().manual_seed(4048))
    return {"energy": e.mean, "energy_sd": e.sd, "draws": e.k, "energy_over_floor": e.mean / floor.mean,
            "modes_covered": rep.modes_covered, "modes": rep.n_modes, "max_weight_error": float(rep.max_weight_error),
            "weight_errors": (rep.fractions - rep.weights).tolist(), "off_mode": float(rep.off_mode)}


def true_row(problem: str) -> dict:
    """Fresh true samples scored like a student: what a perfect sampler gets."""
    return gmm_row(problem, reference(problem)[0].sample(N_EVAL * DRAWS, generator=torch.Generator().manual_seed(99)))


def teacher_rows(problem: str) -> dict:
    mixture = reference(problem)[0]
    teacher, rows = ExactTeacher(mixture, VEProcess()), {}
    for k in TEACHER_STEPS:
        t0 = time.perf_counter()
        x = sample_ode(teacher, VEProcess(), k, N_EVAL * DRAWS, mixture.dim, generator=torch.Generator().manual_seed(k))
        rows[k] = {**gmm_row(problem, x), "nfe": ode_nfe(k),
                   "ms_per_1000": 1e3 * (time.perf_counter() - t0) / (N_EVAL * DRAWS / 1000)}
    return rows


def student_job(args: tuple) -> tuple:
    """One (problem, method) distillation; runs in a worker process with one thread."""
    problem, method, steps, tmp = args
    torch.set_num_threads(1)
    config = method_config(problem, method, steps)
    config["train"].update({"progress": False, "eval_every": 0, "checkpoint_every": 10**6,
                            "log_every": 100, "device": "cpu"})
    config.setdefault("eval", {})["n_samples"] = 500
    trainer, _, wall = distil(config, Path(tmp) / f"{problem}_{method}")
    latent = config.get("latent_dim") or reference(problem)[0].dim
    with trainer.ema_weights() as gen, torch.no_grad():
        z = torch.randn(N_EVAL * DRAWS, latent, generator=torch.Generator().manual_seed(7))
        t0 = time.perf_counter()
        x = gen(z, None)
        sample_ms = 1e3 * (time.perf_counter() - t0) / (N_EVAL * DRAWS / 1000)
    row = {**gmm_row(problem, x), "nfe": 1, "ms_per_1000": sample_ms, "train_s": wall, "steps": steps,
           "skipped": sum(trainer.skipped.values()), "config": config}
    print(f"{problem} {method}: energy {row['energy']:.4f} ({row['energy_over_floor']:.1f}x floor), modes "
          f"{row['modes_covered']}/{row['modes']}, weight err {row['max_weight_error']:.3f}, {wall:.0f}s", flush=True)
    return problem, method, row, x


def method_config(problem: str, method: str, steps: int | None = None) -> dict:
    """The shipped config of `method` (its part before '+') on `problem`, with the lever's overrides."""
    base = method.split("+")[0]
    config = example(METHODS[base])
    config["mixture"] = copy.deepcopy(PROBLEMS[problem])
    if config.get("process", {}).get("name", "ve") == "ve":
        config["distill"].update(copy.deepcopy(OVERRIDES.get(problem, {})))
    for item in LEVERS.get(method, []):
        key, value = item.split("=", 1)
        *path, last = key.split(".")
        node = config
        for part in path:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[last] = yaml.safe_load(value)
    if steps is not None:
        config["train"]["steps"] = steps
    return config


CHAIN_STEPS = [2, 4]


def chain_job(args: tuple) -> tuple:
    k, train_steps, tmp = args
    torch.set_num_threads(1)
    config = example("chain_didi")
    config["steps"] = k
    config["train"].update({"steps": train_steps, "progress": False, "eval_every": 0,
                            "checkpoint_every": 10**6, "device": "cpu"})
    trainer, obj, wall = distil(config, Path(tmp) / f"chain_{k}")
    with trainer.ema_weights() as gen:
        metrics = obj.evaluate(gen)
    teacher = {int(s.split("_")[2][:-4]): v for s, v in metrics.items() if s.startswith("kl_teacher")}
    print(f"chain student {k} steps: KL {metrics[f'kl_student_{k}step']:.4f}; teacher {teacher}", flush=True)
    return k, {"kl": metrics[f"kl_student_{k}step"], "train_s": wall, "config": config}, teacher


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a few steps, to check the script runs")
    ap.add_argument("--jobs", type=int, default=2, help="distillations run in parallel, one thread each")
    ap.add_argument("--problems", default=",".join(PROBLEMS))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--chain-steps", type=int, default=1500)
    ap.add_argument("--retable", action="store_true", help="rewrite the table from toy.json")
    ap.add_argument("--merge", action="store_true", help="keep other problems' rows of an existing toy.json")
    args = ap.parse_args()
    if args.retable:
        return retable()
    problems = [p for p in args.problems.split(",") if p]  # --problems "" reruns only the chain (with --merge)
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m.split("+")[0] not in METHODS or ("+" in m and m not in LEVERS)]
    if unknown:
        ap.error(f"unknown methods {unknown}; choose from {', '.join([*METHODS, *LEVERS])}")
    result = {"goal": f"IKL, SiD, SIM and forward-KL students within {GOAL_FLOOR:g}x of the floor, every mode "
                      f"covered, off-mode share at most {GOAL_OFF_MODE:g}x the true samples'; "
                      "chain: the 4-step student beats the 4-step teacher",
              "n_eval": N_EVAL, "draws": DRAWS, "jobs": args.jobs, "gmm": {}, "chain": {"teacher": {}, "students": {}}}
    for p in problems:
        floor = reference(p)[1]
        result["gmm"][p] = {"floor": floor.mean, "floor_std": floor.sd, "teacher": teacher_rows(p),
                            "true": true_row(p), "students": {}}
    pics: dict = {p: {} for p in problems}
    with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(args.jobs) as pool:
        jobs = [(p, m, 30 if args.quick else None, tmp) for p in problems for m in methods]
        jobs = [(p, m, s or method_config(p, m)["train"]["steps"], t) for p, m, s, t in jobs]
        chain_steps = CHAIN_STEPS if args.chain_steps else []
        chain = pool.map(chain_job, [(k, 20 if args.quick else args.chain_steps, tmp) for k in chain_steps])
        for p, m, row, x in pool.map(student_job, jobs):
            result["gmm"][p]["students"][m] = row
            pics[p][m] = x
        for k, row, teacher in chain:
            result["chain"]["students"][k] = row
            result["chain"]["teacher"].update(teacher)
    for p in problems:
        picture_grid(reference(p)[0], pics[p], ROOT / "docs" / "img" / f"toy_{p}{'_quick' if args.quick else ''}.png")
    old = Path(__file__).resolve().parent / "results" / "toy.json"
    if args.merge and old.exists():
        previous = json.loads(old.read_text())
        for p, r in previous["gmm"].items():
            if p in result["gmm"]:  # this run's rows replace the same methods' rows
                result["gmm"][p]["students"] = {**r["students"], **result["gmm"][p]["students"]}
            result["gmm"].setdefault(p, r)
        if not args.chain_steps:
            result["chain"] = previous["chain"]
    result["chain"]["students"] = {int(k): v for k, v in result["chain"]["students"].items()}
    result["chain"]["teacher"] = {int(k): v for k, v in result["chain"]["teacher"].items()}
    result["goal_met"] = goal_met(result)
    path = write_result("toy" + ("_quick" if args.quick else ""), result)
    if not args.quick:
        replace_section("toy", table(result))
    print(f"wrote {path}")


def retable() -> None:
    """Rewrite the goal check and the table of a saved toy.json."""
    path = Path(__file__).resolve().parent / "results" / "toy.json"
    result = json.loads(path.read_text())
    result.pop("machine", None)
    result["chain"]["students"] = {int(k): v for k, v in result["chain"]["students"].items()}
    result["chain"]["teacher"] = {int(k): v for k, v in result["chain"]["teacher"].items()}
    result["goal_met"] = goal_met(result)
    write_result("toy", result)
    replace_section("toy", table(result))


def goal_met(result: dict) -> dict:
    """Per problem and goal method: the best of its rows (shipped config or a lever) that meets every part."""
    out = {}
    for p, r in result["gmm"].items():
        off_goal = GOAL_OFF_MODE * r["true"]["off_mode"]
        for m in GOAL:
            rows = {k: v for k, v in r["students"].items() if k.split("+")[0] == m}
            met = [k for k, v in rows.items() if v["energy_over_floor"] <= GOAL_FLOOR
                   and v["modes_covered"] == v["modes"] and v["off_mode"] <= off_goal]
            if rows:
                out[f"{p}/{m}"] = met[0] if met else False
    c = result["chain"]
    if 4 in c["students"] and 4 in c["teacher"]:
        out["chain/4-step student beats 4-step teacher"] = c["students"][4]["kl"] < c["teacher"][4]
    return out


def picture_grid(mixture, samples: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(samples)
    cols = min(4, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), dpi=90, squeeze=False)
    means = mixture.means[:, :2].numpy()
    lim = float(abs(means).max() + 1.5)
    for ax, name in zip(axes.flat, names):
        x = samples[name][:1500, :2].numpy()
        ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.4, c="tab:red")
        ax.scatter(means[:, 0], means[:, 1], marker="x", c="k", s=20)
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xticks=[], yticks=[], aspect="equal")
        ax.set_title(name, fontsize=9)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def estimate(row: dict) -> Estimate:
    return Estimate(row["energy"], row["energy_sd"], row["draws"])


def versus(row: dict, base: dict | None) -> str:
    """A lever's row against its method's shipped row: energy better / worse only beyond 2 standard errors of
    the difference; the off-mode share's difference (binomial standard error) the same way."""
    if base is None or row is base:
        return ""
    e = ("lower" if estimate(row).lower_than(estimate(base)) else
         "higher" if estimate(base).lower_than(estimate(row)) else "same")
    n = N_EVAL * DRAWS
    se = ((row["off_mode"] * (1 - row["off_mode"]) + base["off_mode"] * (1 - base["off_mode"])) / n) ** 0.5
    d = row["off_mode"] - base["off_mode"]
    o = "lower" if d < -2 * se else "higher" if d > 2 * se else "same"
    return f"energy {e}, off-mode {o}"


def table(result: dict) -> str:
    lines = []
    draws = result.get("draws", DRAWS)
    for p, r in result["gmm"].items():
        t = r["true"]
        lines += [f"**{p}**: energy distance (V-statistic), mean ± sd over {draws} disjoint draws of "
                  f"{result['n_eval']} samples, each against its own fresh target set; floor {r['floor']:.4f} ± "
                  f"{r['floor_std']:.4f} (fresh true samples, same protocol, {FLOOR_DRAWS} draws). "
                  "Off-mode: share of all "
                  f"{draws * result['n_eval']} samples outside every mode's 99% ball (true samples: "
                  f"{t['off_mode']:.3f}; goal at most {GOAL_OFF_MODE * t['off_mode']:.3f}). A lever's row is "
                  "compared with its method's shipped row: lower or higher only beyond 2 standard errors.", "",
                  "| sampler | NFE | energy | x floor | modes covered | max weight error | off-mode | vs shipped "
                  "| train s |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

        def line(name, row, nfe, train="-", vs=""):
            return (f"| {name} | {nfe} | {row['energy']:.4f} ± {row.get('energy_sd', float('nan')):.4f} "
                    f"| {row['energy_over_floor']:.1f} | {row['modes_covered']}/{row['modes']} "
                    f"| {row['max_weight_error']:.3f} | {row['off_mode']:.3f} | {vs} | {train} |")

        lines.append(line("true samples (reference)", t, "-"))
        for k, row in r["teacher"].items():
            lines.append(line(f"teacher ODE, {k} steps", row, row["nfe"]))
        for m, row in r["students"].items():
            base = r["students"].get(m.split("+")[0])
            lines.append(line(f"{m}, one step", row, 1, f"{row['train_s']:.0f}", versus(row, base)))
        lines += ["", f"![{p}: one-step students]({'img'}/toy_{p}.png)", ""]
    c = result["chain"]
    lines += ["**Markov chain** (vocabulary 4, length 5, `examples/toy/chain_didi.yaml`): exact KL(sampler || target) "
              "over all 1024 sequences; DiDi-Instruct with a learned discriminator.", "",
              "| sampler | steps | exact KL | train s |", "| --- | --- | --- | --- |"]
    for k, v in sorted(c["teacher"].items()):
        lines.append(f"| teacher's own sampler | {k} | {v:.4f} | - |")
    for k, v in sorted(c["students"].items()):
        lines.append(f"| DiDi-Instruct student | {k} | {v['kl']:.4f} | {v['train_s']:.0f} |")
    goals = ", ".join(f"{k}: {'met by ' + v if isinstance(v, str) else 'met' if v else 'not met'}"
                      for k, v in result["goal_met"].items())
    lines += ["", "Goal check: " + goals, "",
              f"Distillations ran {result['jobs']} at a time, one thread each; "
              "train s is wall time under that load."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
