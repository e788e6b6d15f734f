"""The objective contract: everything the trainer and the command line ask of what they train.

An objective owns its networks (`modules`, "generator" required) and how each loss is computed; the
trainer owns everything else. What a run writes for people and other tools (metrics, samples in any
format, an exported model) is an `Outputs` the backend hands to the objective when it builds it, so
every objective answers the same members and none is looked up by name."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn

from .noise import Noise


@dataclass(frozen=True)
class Progress:
    """Where training is: `step` generator updates done out of `steps`; `fraction` in [0, 1]."""

    step: int
    steps: int

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.steps) if self.steps > 0 else 0.0


def _no_metrics(generator: nn.Module) -> dict[str, float]:
    return {}


def _no_files(generator: nn.Module, run_dir: Path, step: int) -> list[Path]:
    return []


def _no_export(generator: nn.Module, run_dir: Path) -> Path | None:
    return None


@dataclass(frozen=True)
class Outputs:
    """What a run writes besides checkpoints, each a plain function of the (EMA) generator.

    evaluate(generator) -> metrics; save_samples(generator, run_dir, step) -> files written for people
    (a PNG grid, a text file, a field plot, a mesh); export(generator, run_dir) -> the folder other tools
    load (a diffusers pipeline, a transformers folder), or None."""

    evaluate: Callable[[nn.Module], dict[str, float]] = _no_metrics
    save_samples: Callable[[nn.Module, Path, int], list[Path]] = _no_files
    export: Callable[[nn.Module, Path], Path | None] = _no_export


def sample_path(run_dir: Path, step: int, suffix: str) -> Path:
    """run_dir/samples/step_XXXXXXXX<suffix>, its folder created: where save_samples writes."""
    folder = Path(run_dir) / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"step_{step:08d}{suffix}"


class Objective:
    """What the Trainer trains. Subclasses set `modules` and implement `generator_loss` (and
    `aux_losses` when they have auxiliary networks); the rest has defaults."""

    name: str = "distill"  # shown on the progress bar
    modules: dict[str, nn.Module]  # every trainable network; "generator" is required
    # networks held fixed that belong to the run (a reward alignment's anchor): checkpointed and restored on
    # resume, moved to the device, never optimised
    frozen: dict[str, nn.Module]
    # frozen networks the objective reads but does not own (the teacher): never checkpointed; the trainer moves
    # them to the device, shards them with train.shard_teacher and compiles or checkpoints their blocks on request
    teachers: dict[str, nn.Module]

    def __init__(self, outputs: Outputs | None = None):
        self.outputs = outputs or Outputs()
        self.frozen = {}
        self.teachers = {}

    def start(self) -> None:
        """Called once when a run begins at step 0 (after train.init_from has loaded), never on resume."""

    def aux_losses(self, noise: Noise, n: int, progress: Progress) -> dict[str, Tensor]:
        """Per-example losses (n,) keyed by auxiliary module name; {} when there is none."""
        return {}

    def generator_loss(self, noise: Noise, n: int, progress: Progress) -> tuple[Tensor, dict[str, Tensor]]:
        """Per-example generator loss (n,) and scalar tensors to log."""
        raise NotImplementedError

    def to(self, device) -> Objective:
        """Move what the objective holds besides `modules` (a frozen teacher) to device."""
        return self

    def evaluate(self, generator: nn.Module) -> dict[str, float]:
        return dict(self.outputs.evaluate(generator))

    def save_samples(self, generator: nn.Module, run_dir: Path, step: int) -> list[Path]:
        return list(self.outputs.save_samples(generator, Path(run_dir), step))

    def export(self, generator: nn.Module, run_dir: Path) -> Path | None:
        return self.outputs.export(generator, Path(run_dir))
