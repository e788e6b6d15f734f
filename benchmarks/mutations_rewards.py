"""Mutation check of the reward-alignment tests: each mutation (a sign, a beta, a weight) is applied to the
source in turn, the reward tests run, and every mutation must make them fail. Exits 1 if one survives.

    python benchmarks/mutations_rewards.py          (about a minute; restores every file it touches)
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["tests/test_reward.py", "tests/test_aux.py"]
TILT, ALIGN = "modalities/toy_gmm/rewards.py", "engine/alignment.py"
D_STAR = "out = d + b**2 / a * g / self.beta"
LOG_PI = "log_pi = -per_example((x - x0) ** 2) / (2 * self.std**2)"
MUTATIONS = [  # (file, original, mutant)
    (TILT, "means = mu + s2[:, None] * w / beta", "means = mu - s2[:, None] * w / beta"),
    (TILT, "s2 * (w @ w) / (2 * beta**2)", "s2 * (w @ w) / (2 * beta)"),
    (TILT, "k = lam / beta", "k = lam * beta"),
    (TILT, "- 0.5 * ((mu - c) ** 2).sum(-1) / v)", "+ 0.5 * ((mu - c) ** 2).sum(-1) / v)"),
    (ALIGN, D_STAR, D_STAR.replace("d + b", "d - b")),
    (ALIGN, D_STAR, D_STAR.replace("/ self.beta", "* self.beta")),
    (ALIGN, D_STAR, D_STAR.replace("b**2", "b")),
    (ALIGN, "return -self.alpha * r, {", "return self.alpha * r, {"),
    (ALIGN, "return -self.alpha * r + self.weight * dist", "return -self.alpha * r - self.weight * dist"),
    (ALIGN, "adv = r - r.mean()", "adv = r.mean() - r"),
    (ALIGN, LOG_PI, LOG_PI.replace("self.std**2", "self.std")),
    (ALIGN, "return -self.alpha * f, {", "return self.alpha * f, {"),
    ("engine/metrics/entropy.py", "return -knn_entropy(x, k) - float", "return knn_entropy(x, k) - float"),
    ("engine/divergences/policy.py", "adv = adv + bonus", "adv = adv - bonus"),
    ("modalities/image/rewards.py", "(paper & ~reach)", "(paper & reach)"),
    (ALIGN, "(twice_differentiable() if live else contextlib.nullcontext())", "(contextlib.nullcontext())"),
    ("modalities/toy_markov/evaluate.py", "self.target.log() + self.reward / beta",
     "self.target.log() - self.reward / beta"),
]


def main() -> int:
    survived = 0
    for path, original, mutant in MUTATIONS:
        file = ROOT / path
        text = file.read_text()
        if original not in text:
            raise SystemExit(f"{path}: the line to mutate is gone: {original!r}; update this script")
        file.write_text(text.replace(original, mutant, 1))
        try:
            run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", *TESTS], capture_output=True, cwd=ROOT)
        finally:
            file.write_text(text)
        caught = run.returncode != 0
        survived += not caught
        print(f"{'caught  ' if caught else 'SURVIVED'} {path}: {mutant}")
    print(f"{len(MUTATIONS) - survived} of {len(MUTATIONS)} mutations caught")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
