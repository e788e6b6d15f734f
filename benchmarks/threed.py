"""3D score distillation on the exact mixture-over-renders teacher: which divergence reaches which scene.

Every method of examples/3d/ trains the same 16 particles (8 per prompt; "a toy": red ball / blue cube / green
torus at weights 0.5 / 0.3 / 0.2, "a shape": yellow cylinder / blue cube at 0.5 / 0.5) for the same number of
steps through the command line, one run at a time on two threads; then the Janus case with and without
view-dependent prompting, and a bit-identical rerun check. Writes benchmarks/results/3d.json, the turntables and
sample grids under docs/img/, and prints the tables of docs/results.md.

    python benchmarks/threed.py              # 200 steps per method (about 15 minutes on 2 cores)
    python benchmarks/threed.py --steps 20   # a quick look (writes 3d_quick.json, no pictures)
    python benchmarks/threed.py --levers     # the lever sweep (LEVERS, 400 steps each), added to 3d.json
    python benchmarks/threed.py --learned    # the same methods from the shipped learned teacher, added to 3d.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import read_result, replace_section, write_result  # noqa: E402

EXAMPLES = ROOT / "examples" / "3d"
METHODS = [("SDS", "sds"), ("VSD, exact fake", "vsd"), ("VSD, learned fake", "vsd_learned"),
           ("SIM (Dive3D)", "sim"), ("JS f-divergence, exact ratio", "fdiv_js")]
JANUS = [("SDS, view-independent prompt", "janus"), ("SDS, view-dependent prompting", "janus_view_prompts")]
# levers tried on fidelity and coverage: (label, example, overrides), each at --lever-steps
ANNEAL = ["distill.time_sampler.t_max_end=500", "distill.time_sampler.anneal=[0.5,0.5]"]
LEVERS = [
    ("SDS", "sds", []),
    ("SDS, t_max 980 -> 500 at half", "sds", ANNEAL),
    ("SDS, HiFA schedule", "sds", ["distill.time_sampler={name: hifa, t_min: 20, t_max: 980}"]),
    ("SDS, 64 samples per ray", "sds", ["render.n_samples=64"]),
    ("SIM (Dive3D)", "sim", []),
    ("SIM, t_max 980 -> 500 at half", "sim", ANNEAL),
    ("SDS, random initial grids (std 1)", "sds", ["generator.init_std=1.0"]),
    ("SIM, random initial grids (std 1)", "sim", ["generator.init_std=1.0"]),
]
# the learned teacher shipped in the package (examples/3d/teacher.yaml): no exact score, the scenes as reference
SHIPPED = ["teacher.path=shipped"]
LEARNED = [("SDS", "sds_learned", []), ("VSD, exact fake", "vsd", SHIPPED), ("VSD, LoRA fake", "vsd_lora_learned", []),
           ("VSD, residual fake", "vsd_learned", SHIPPED), ("SIM (Dive3D)", "sim", SHIPPED)]
UNI = str(Path(sys.executable).parent / "unidistill")


def run(example: str, out: Path, steps: int, extra: list[str] = ()) -> tuple[dict, float]:
    """Train one example; (metrics.json, wall seconds of the whole command)."""
    shutil.rmtree(out, ignore_errors=True)
    sets = [f"train.steps={steps}", "train.threads=2", "train.progress=false", "train.seed=0", *extra]
    cmd = [UNI, "distill", str(EXAMPLES / f"{example}.yaml"), "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads((out / "metrics.json").read_text()), time.perf_counter() - start


def shipped_teacher_metrics() -> dict:
    """The shipped learned teacher measured against the scenes it was trained on (64 ODE samples, 18 Heun steps;
    denoising from renders noised at four times)."""
    import torch

    from unidistill.modalities.threed.cameras import CameraRanges
    from unidistill.modalities.threed.learned import SHIPPED, load_teacher
    from unidistill.modalities.threed.teach import GroundTruth, teacher_metrics

    torch.set_num_threads(2)
    teacher, info = load_teacher(SHIPPED)
    truth = GroundTruth(info["prompts"], info["n_samples"], info["background"], info["bound"])
    return teacher_metrics(teacher, truth, CameraRanges(), info["size"], 64, 18)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_3d")
    p.add_argument("--retable", action="store_true", help="rewrite docs/results.md from the saved json")
    p.add_argument("--levers", action="store_true", help="only the lever sweep (LEVERS), added to 3d.json")
    p.add_argument("--lever-steps", type=int, default=400)
    p.add_argument("--only", help="with --levers/--learned: run only these labels (';'-separated), keep the rest")
    p.add_argument("--learned", action="store_true", help="only the learned-teacher table (LEARNED), added to 3d.json")
    args = p.parse_args()
    if args.retable:
        replace_section("3d", table(read_result("3d")))
        return
    if args.learned or args.levers:  # one more table, added to the saved results
        key, entries, steps = ("learned", LEARNED, args.steps) if args.learned else ("levers", LEVERS, args.lever_steps)
        res = read_result("3d")
        res.pop("machine", None)
        keep = res.get(key, {}).get("runs", {}) if args.only else {}  # --only adds to the saved runs
        res[key] = {"steps": steps, "runs": keep}
        entries = [e for e in entries if not args.only or e[0] in args.only.split(";")]
        if args.learned:
            res[key]["teacher"] = shipped_teacher_metrics()
        for k, (label, name, extra) in enumerate(entries):
            m, wall = run(name, args.work / f"{key}_{len(keep) + k}", steps, extra)
            res[key]["runs"][label] = {"example": f"examples/3d/{name}.yaml", "overrides": extra,
                                       "wall_s": round(wall, 1), **m}
            print(label, json.dumps(res[key]["runs"][label]), flush=True)
        write_result("3d", res)
        replace_section("3d", table(res))
        return
    quick = args.steps != 200
    results = {"steps": args.steps, "methods": {}, "janus": {}, "rerun": {}}
    for label, name in METHODS:
        m, wall = run(name, args.work / name, args.steps)
        results["methods"][label] = {"example": f"examples/3d/{name}.yaml", "wall_s": round(wall, 1), **m}
        print(label, json.dumps(results["methods"][label]), flush=True)
    for label, name in JANUS:
        m, wall = run(name, args.work / name, args.steps)
        results["janus"][label] = {"example": f"examples/3d/{name}.yaml", "wall_s": round(wall, 1), **m}
        print(label, json.dumps(results["janus"][label]), flush=True)
    for name in ("sds", "vsd"):  # the same seed twice: the particles' bytes must match
        hashes = []
        for k in range(2):
            run(name, args.work / f"rerun_{name}_{k}", 10, ["eval.turntable=2"])
            hashes.append(digest(args.work / f"rerun_{name}_{k}" / "scenes" / "particles.safetensors"))
        results["rerun"][name] = {"sha256": hashes, "identical": hashes[0] == hashes[1]}
    write_result("3d_quick" if quick else "3d", results)
    if not quick:
        replace_section("3d", table(results))
        img = ROOT / "docs" / "img"
        for _, name in METHODS + JANUS:
            run_dir = args.work / name
            stem = "a_head_00" if name.startswith("janus") else "a_toy_00"
            shutil.copy(run_dir / "scenes" / f"{stem}_turntable.gif", img / f"3d_{name}_turntable.gif")
            shutil.copy(sorted((run_dir / "samples").glob("*.png"))[-1], img / f"3d_{name}_particles.png")
    print(table(results))


def coverage_row(label: str, m: dict) -> str:
    """| label | fidelity | scenes reached | entropy | weight error | consistency | saturation drift |"""
    return (f"| {label} | {m['fidelity_psnr']:.2f} | {m['modes']:.0f} of {m['modes_of']:.0f} | "
            f"{m['assignment_entropy']:.3f} | {m['weight_error']:.3f} | {m['consistency']:.2f} | "
            f"{m['saturation_drift']:+.3f} |")


def table(r: dict) -> str:
    rows = [f"{r['steps']} generator steps per method, batch 16 (one view of each of the 16 particles per step), "
            "32x32 renders with 32 samples per ray, Adam lr 0.01 on the grids (32^3), one run at a time on two "
            "threads. Fidelity: PSNR of each particle to its nearest ground-truth scene over 16 held-out views; "
            "ceiling: each scene fitted into a grid of the particles' resolution and re-rendered (what a perfect "
            "particle scores); scenes reached: distinct nearest scenes over both prompts (3 + 2); entropy of the "
            "assignment per prompt (nats, mean over prompts; the weights' own: 1.030 and 0.693); largest gap between "
            "a scene's share of particles and its weight; consistent views: share of particles whose nearest scene is "
            "the same from every view; saturation drift: mean HSV saturation of a particle's opaque pixels minus its "
            "scene's.", "",
            "| method | fidelity PSNR (dB) | ceiling (dB) | scenes reached | assignment entropy | largest weight "
            "error | consistent views | saturation drift | wall (s) |", "|" + " --- |" * 9]
    for label, m in r["methods"].items():
        rows.append(f"| {label} | {m['fidelity_psnr']:.2f} | {m['ceiling_psnr']:.2f} | {m['modes']:.0f} of "
                    f"{m['modes_of']:.0f} | {m['assignment_entropy']:.3f} | {m['weight_error']:.3f} | "
                    f"{m['consistency']:.2f} | {m['saturation_drift']:+.3f} | {m['wall_s']:.0f} |")
    rows += ["", "The Janus case (examples/3d/janus*.yaml): the head scene, 4 particles, SDS; janus rate: share "
             "of particles whose renders from the back sector are nearer the front as seen from there than the "
             "true back.", "",
             "| Janus case | janus rate | fidelity PSNR (dB) | wall (s) |", "| --- | --- | --- | --- |"]
    for label, m in r["janus"].items():
        rows.append(f"| {label} | {m['janus_rate']:.2f} | {m['fidelity_psnr']:.2f} | {m['wall_s']:.0f} |")
    if "learned" in r:
        rows += ["", f"The learned teacher (`teacher.path: shipped`, trained by examples/3d/teacher.yaml), "
                 f"{r['learned']['steps']} steps each; no exact score exists, so fidelity and coverage are measured "
                 "against the ground-truth scenes only.", ""]
        tm = r["learned"].get("teacher")
        if tm:
            denoise = ", ".join(f"{tm[k]:.1f} dB at t = {k.split('_t')[1]}" for k in tm if k.startswith("denoise"))
            rows += [f"The teacher itself: its ODE samples (18 Heun steps) score {tm['psnr_to_nearest']:.1f} dB to "
                     f"the nearest ground-truth render (largest weight gap {tm['weight_error']:.2f}); its one-step "
                     f"denoising of a noised render scores {denoise}.", ""]
        rows += ["| method | fidelity PSNR (dB) | scenes reached | assignment entropy | largest weight error | "
                 "consistent views | saturation drift | wall (s) |", "|" + " --- |" * 8]
        for label, m in r["learned"]["runs"].items():
            rows.append(coverage_row(label, m) + f" {m['wall_s']:.0f} |")
    if "levers" in r:
        rows += ["", f"Levers on fidelity and coverage, exact teacher, {r['levers']['steps']} steps each (else as "
                 "the first table):", "",
                 "| run | fidelity PSNR (dB) | scenes reached | assignment entropy | largest weight error | "
                 "consistent views | saturation drift |", "|" + " --- |" * 7]
        for label, m in r["levers"]["runs"].items():
            rows.append(coverage_row(label, m))
    rows.append("")
    rows += ["Reruns with the same seed (10 steps, particles.safetensors compared): " + ", ".join(
        f"{k} {'bit-identical' if v['identical'] else 'DIFFERENT'}" for k, v in r["rerun"].items()) + "."]
    return "\n".join(rows)


if __name__ == "__main__":
    main()
