"""`unidistill teach CONFIG.yaml`, `unidistill distill CONFIG.yaml` (both take [--set key=value ...]
[--out DIR] [--resume CKPT]), `unidistill sample RUN_DIR --n N --out FILE.npy` and `unidistill estimate
CONFIG.yaml [--set ...] [--steps N] [--teach]` (memory per process and time per step, before a run)."""
from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .checkpoint import CheckpointError
from .config import ConfigError, TrainConfig, UniqueKeyLoader, apply_overrides, build, to_dict
from .errors import Interrupted, RunLocked, TrainingError

EXIT_BAD_INPUT, EXIT_TRAINING_FAILED, EXIT_UNEXPECTED = 2, 3, 1


@dataclass
class RunConfig:
    """A validated run config: its backend, the backend's section, the train section and the raw data."""

    backend: Any
    modality: str
    cfg: Any
    train: TrainConfig
    data: dict

    def resolved(self) -> dict:
        """Every key with its default filled in: what the run directory's config.yaml records."""
        return {"modality": self.modality, **to_dict(self.cfg), "train": to_dict(self.train)}


def load_run_config(path: str | Path, overrides: list[str] = (), command: str = "distill") -> RunConfig:
    """Read a YAML run config, apply overrides and validate it; imports only the named backend, and no
    more of it than its config module, so a bad key is reported before torch loads. `command` "teach"
    validates against the backend's TeachConfig instead of its Config."""
    from .backend import get_backend

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder; give the YAML file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.load(path.read_text(), Loader=UniqueKeyLoader) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    apply_overrides(data, list(overrides))
    if "modality" not in data:
        raise ConfigError(f"config file {path} has no 'modality' key")
    backend = get_backend(data["modality"])
    train = build(TrainConfig, data.get("train"), "train")
    rest = {k: v for k, v in data.items() if k not in ("modality", "train")}
    if command == "teach" and backend.TeachConfig is None:
        raise ConfigError(f"modality {data['modality']!r} has no teacher to train (its teachers are exact)")
    cfg = build(backend.TeachConfig if command == "teach" else backend.Config, rest, "")
    return RunConfig(backend, data["modality"], cfg, train, data)


def cmd_train(args) -> int:
    """distill (a student) or teach (a teacher): build the backend's objective and run the Trainer; when
    training ends, the objective's export writes its EMA network for other tools. The run directory is
    checked and locked before anything is built; config.yaml is written once resuming succeeded."""
    from .recipe import check_recipes
    from .runlock import RunLock

    run = load_run_config(args.config, args.set, args.command)
    check_recipes(run.cfg, run.backend.offers(run.cfg) if args.command == "distill" else None)
    out = prepare_out(Path(args.out or Path("runs") / Path(args.config).stem))
    import os

    lock = RunLock(out).acquire() if int(os.environ.get("RANK", "0")) == 0 else None  # one run per folder
    try:
        with memory_guard(run.train.device):
            return _train(run, out, args)
    finally:
        if lock is not None:
            lock.release()


@contextlib.contextmanager
def memory_guard(device: str):
    """On a CPU run (Linux), cap the address space at what is mapped now plus the memory and swap available,
    so that a size that cannot fit (a huge batch or layer) fails as an allocation error, reported in one
    line, instead of the kernel's OOM killer ending the process without a word (a looser cap, twice that,
    let a batch of 1e8 reach the OOM killer on this machine). CUDA runs are left alone (the driver maps
    large virtual ranges)."""
    try:
        import resource

        with open("/proc/self/status") as f:
            mapped = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if line.split()[1:2]}
        available = info["MemAvailable"] + info.get("SwapFree", 0)
    except (ImportError, OSError, StopIteration, ValueError, KeyError):
        yield
        return
    if device == "cuda" or (device == "auto" and _cuda_available()):
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = mapped + available
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    if soft != resource.RLIM_INFINITY:
        cap = min(cap, soft)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def build_objective(run: RunConfig, out: Path, command: str):
    """The run's objective for `command` (teach or distill), built under the run's thread count and seed
    (network initialisation is part of the run's seed); `out` is where the backend may cache files."""
    import torch

    if run.train.threads is not None:
        torch.set_num_threads(run.train.threads)
    torch.manual_seed(run.train.seed)
    return (run.backend.teach if command == "teach" else run.backend.build)(run.cfg, out)


def _train(run: RunConfig, out: Path, args) -> int:
    from .trainer import Trainer

    objective = build_objective(run, out, args.command)
    trainer = Trainer(objective, run.train, out, resume=args.resume, run_config=run.resolved(),
                      resume_changed=args.resume_changed)
    try:
        metrics = trainer.fit()
        if trainer.step >= run.train.steps:
            with trainer.ema_weights() as net:  # every process enters (a sharded run gathers the EMA)
                folder = objective.export(net, out) if net is not None else None
            if folder is not None:
                print(f"EMA network exported to {folder}")
    finally:
        trainer.end()
    if trainer.acc.is_main_process and metrics:
        print("metrics:", ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        print(f"run directory: {out}")
    return 0


def cmd_estimate(args) -> int:
    """Build the run in a scratch directory (removed afterwards), print its memory per process (engine.memory)
    and, when that fits, the time per step over --steps training steps after one warm-up step; a run that
    does not fit exits 2 with one line. Nothing is written where the run itself would write."""
    import tempfile

    from .recipe import check_recipes

    command = "teach" if args.teach else "distill"
    try:
        run = load_run_config(args.config, args.set, command)
    except ConfigError as err:
        if args.teach or not _loads(args.config, args.set, "teach"):
            raise
        raise ConfigError(f"{err} ({args.config} is a `unidistill teach` config: add --teach)") from None
    check_recipes(run.cfg, run.backend.offers(run.cfg) if command == "distill" else None)
    if args.steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {args.steps}")
    with tempfile.TemporaryDirectory(prefix="unidistill-estimate-") as scratch, memory_guard(run.train.device):
        return _estimate(run, Path(scratch), command, args.steps)


def _loads(config: str, overrides: list[str], command: str) -> bool:
    """Whether `config` is a valid config for `command`."""
    try:
        load_run_config(config, overrides, command)
    except ConfigError:
        return False
    return True


def _estimate(run: RunConfig, scratch: Path, command: str, steps: int) -> int:
    import time

    import torch

    from .memory import advice, estimate
    from .trainer import Trainer

    trainer = Trainer(build_objective(run, scratch, command), run.train, scratch)
    main = trainer.acc.is_main_process
    try:
        found = estimate(trainer)
        if main:
            print(found.table(), flush=True)
        if not found.fits:
            cfg = run.train
            if main:
                hint = advice(cfg.parallel, cfg.shard_teacher, cfg.activation_checkpointing)
                print(f"unidistill: error: {found.error(hint)}", file=sys.stderr)
            return EXIT_BAD_INPUT
        sync = torch.cuda.synchronize if trainer.acc.device.type == "cuda" else (lambda: None)
        trainer.obj.start()
        for i in range(steps + 1):  # the first step warms up (allocations, kernels, compilation)
            if i == 1:
                sync()
                start = time.perf_counter()
            trainer.train_step()
            trainer.step += 1
        sync()
        seconds = (time.perf_counter() - start) / steps
        if main:
            print(f"time per step: {seconds:.3g} s ({run.train.batch_size / seconds:.4g} examples per second at "
                  f"train.batch_size {run.train.batch_size}; mean of {steps} steps after one warm-up step)")
    finally:
        trainer.end()
    return 0


def prepare_out(out: Path) -> Path:
    """The run directory: an existing writable folder, or one that can be made; checked before anything is
    written."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {out} cannot be created ({e.strerror})") from None
    probe = out / ".write_test"
    try:
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"--out {out} is not writable ({e.strerror})") from None
    return out


def cmd_sample(args) -> int:
    """Samples from a run's EMA generator: the backend's sampler builds the generator and its decoding only."""
    run_dir = Path(args.run_dir)
    if args.n < 1:
        raise ConfigError(f"--n must be positive, got {args.n}")
    if not 0 <= args.seed < 2**63:
        raise ConfigError(f"--seed must be in [0, 2^63), got {args.seed}")
    if not (run_dir / "config.yaml").is_file():
        return _sample_exported(run_dir, args)
    try:
        run = load_run_config(run_dir / "config.yaml")
    except ConfigError as err:
        raise ConfigError(_teacher_run_hint(run_dir) or str(err)) from None
    if not Path(args.out).parent.is_dir():
        raise ConfigError(f"--out {args.out}: the folder {Path(args.out).parent} does not exist")
    import torch

    from . import checkpoint as ckpt

    found = ckpt.load_latest(run_dir / "checkpoints", resumable=False)
    if found is None:
        raise ConfigError(f"{run_dir} has no checkpoint to sample from")
    tensors, _ = found
    torch.manual_seed(run.train.seed)
    sampler = run.backend.sampler(run.cfg, run_dir)
    _load_weights(sampler.generator, tensors, "ema.", "generator")
    for name, module in sampler.modules.items():
        _load_weights(module, tensors, f"module.{name}.", name)
    return _draw(sampler, args, run.modality)


def _sample_exported(folder: Path, args) -> int:
    """`unidistill sample` on an exported student folder: student.json names the modality that reads it."""
    import json

    meta = folder / "student.json"
    try:
        modality = json.loads(meta.read_text()).get("modality") if meta.is_file() else None
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        modality = None
    if not isinstance(modality, str):
        raise ConfigError(f"{folder} is neither a run directory (no config.yaml) nor an exported student "
                          "(no student.json naming its modality)")
    if not Path(args.out).parent.is_dir():
        raise ConfigError(f"--out {args.out}: the folder {Path(args.out).parent} does not exist")
    from .backend import get_backend

    backend = get_backend(modality)
    try:
        sampler = backend.exported_sampler(folder)
    except NotImplementedError:
        raise ConfigError(f"modality {modality!r} cannot sample from an exported folder; sample its run "
                          "directory") from None
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"{folder}: {e}") from None
    return _draw(sampler, args, modality)


def _draw(sampler, args, modality: str) -> int:
    import torch

    for module in (sampler.generator, *sampler.modules.values()):
        module.eval().requires_grad_(False)
    torch.manual_seed(args.seed)  # for samplers that draw from the global generator
    with torch.no_grad():
        drawn = sampler.draw(sampler.generator, args.n, args.seed)
    values = drawn.values
    if args.images:
        if sampler.images is None:
            raise ConfigError(f"--images: modality {modality!r} does not make pictures")
        values = sampler.images(values)
    out = Path(args.out)
    _save_npy(out, values)
    print(f"wrote {args.n} samples of shape {values.shape[1:]} to {out}"
          + ("" if args.images else f" ({drawn.about})" if drawn.about else "")
          + (", [0, 1] images (N, H, W, C)" if args.images else ""))
    if drawn.conditions is not None:
        beside = out.with_name(out.stem + ".conditions.npy")
        _save_npy(beside, drawn.conditions)
        print(f"wrote the condition (class or prompt index) of each sample to {beside}")
    return 0


def _save_npy(path: Path, array) -> None:
    import numpy as np

    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)


def _teacher_run_hint(run_dir: Path) -> str | None:
    """A one-line explanation when run_dir is a `unidistill teach` run, which `sample` does not draw from."""
    try:
        load_run_config(run_dir / "config.yaml", command="teach")
    except ConfigError:
        return None
    return (f"{run_dir} is a teacher run (unidistill teach): `sample` draws from distilled students; the trained "
            f"teacher is exported to {run_dir / 'teacher'} (or use it as `teacher:` of a distill config)")


def _load_weights(module, tensors: dict, prefix: str, name: str) -> None:
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1].strip()
        raise CheckpointError(f"the run's checkpoint does not fit its {name!r} network: {first}") from None


class _Parser(argparse.ArgumentParser):
    """argparse with its errors in the command line's one-line form (no usage block)."""

    def error(self, message: str):
        command = self.prog.removeprefix("unidistill").strip()
        where, help_of = (f"{command}: ", f"{command} ") if command else ("", "")
        print(f"unidistill: error: {where}{message} (see unidistill {help_of}--help)", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="unidistill", description=__doc__)
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    sub = p.add_subparsers(dest="command", required=True)
    for name, what in (("distill", "distil a teacher into a one/few-step student"),
                       ("teach", "train a diffusion teacher on data and export it")):
        d = sub.add_parser(name, help=what)
        d.add_argument("config")
        d.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
        d.add_argument("--out", help="run directory (default runs/<config name>)")
        d.add_argument("--resume", help="resume from this checkpoint folder instead of the run's latest")
        d.add_argument("--resume-changed", action="store_true",
                       help="resume even if the config changes what the checkpoint trained (divergence, nets, ...)")
        d.set_defaults(fn=cmd_train)
    s = sub.add_parser("sample", help="draw samples from a trained run's EMA generator")
    s.add_argument("run_dir")
    s.add_argument("--n", type=int, default=1000)
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--images", action="store_true", help="write pictures in [0, 1], (N, H, W, C), as the pipeline")
    s.set_defaults(fn=cmd_sample)
    e = sub.add_parser("estimate", help="memory per process and time per step of a run, before training it")
    e.add_argument("config")
    e.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    e.add_argument("--steps", type=int, default=3, help="training steps timed after one warm-up step")
    e.add_argument("--teach", action="store_true", help="CONFIG is a `unidistill teach` config")
    e.set_defaults(fn=cmd_estimate)
    try:
        args = p.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error, already printed in one line (2)
        return int(e.code or 0)
    try:
        return args.fn(args)
    except Exception as e:
        if args.debug:
            raise
        code, msg = explain(e)
        print(f"unidistill: {msg}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("unidistill: interrupted before training started; nothing was trained", file=sys.stderr)
        return 130


def explain(e: Exception) -> tuple[int, str]:
    """(exit code, one line) for any error a command can meet; the traceback only with --debug."""
    if isinstance(e, Interrupted):
        return e.exit_code, f"interrupted: {e}"
    if isinstance(e, TrainingError):
        return EXIT_TRAINING_FAILED, f"error: {e}"
    if isinstance(e, (ConfigError, CheckpointError, RunLocked, FileNotFoundError, KeyError, ValueError)):
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        return EXIT_BAD_INPUT, f"error: {' '.join(str(msg).split())}"
    text = " ".join(str(e).split())
    if isinstance(e, MemoryError) or any(w in text for w in ("not enough memory", "out of memory", "allocate memory")):
        return EXIT_BAD_INPUT, ("error: out of memory (" + (text[:160] or type(e).__name__) + "); lower "
                                "train.batch_size or the network sizes (hidden, depth, width, ...)")
    if isinstance(e, OSError):
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        return EXIT_BAD_INPUT, f"error: {e.strerror or text}{where}"
    return EXIT_UNEXPECTED, f"error: unexpected {type(e).__name__}: {text[:300]} (rerun with --debug for the traceback)"


if __name__ == "__main__":
    sys.exit(main())
