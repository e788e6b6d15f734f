"""`unidistill teach CONFIG.yaml`, `unidistill distill CONFIG.yaml` (both take [--set key=value ...]
[--out DIR] [--resume CKPT]) and `unidistill sample RUN_DIR --n N --out FILE.npy`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from .checkpoint import CheckpointError
from .config import ConfigError, apply_overrides, build, to_dict

EXIT_BAD_INPUT = 2


def load_run_config(path: str | Path, overrides: list[str] = (), command: str = "distill"):
    """Read a YAML run config, apply overrides, validate it; returns (backend, backend cfg, train cfg, data).
    `command` "teach" validates against the backend's TeachConfig instead of its Config."""
    from .backend import get_backend
    from .trainer import TrainConfig

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    apply_overrides(data, list(overrides))
    if "modality" not in data:
        raise ConfigError(f"config file {path} has no 'modality' key")
    try:
        backend = get_backend(data["modality"])
    except KeyError as e:
        raise ConfigError(f"config key modality: {e.args[0]}") from None
    train = build(TrainConfig, data.get("train"), "train")
    rest = {k: v for k, v in data.items() if k not in ("modality", "train")}
    if command == "teach" and not hasattr(backend, "teach"):
        raise ConfigError(f"modality {data['modality']!r} has no teacher to train (its teachers are exact)")
    cfg = build(backend.TeachConfig if command == "teach" else backend.Config, rest, "config")
    return backend, cfg, train, data


def resolved(backend_name: str, cfg, train) -> dict:
    return {"modality": backend_name, **to_dict(cfg), "train": to_dict(train)}


def cmd_train(args) -> int:
    """distill (a student) or teach (a teacher): build the backend's objective and run the Trainer.
    An objective with `export(net, run_dir)` also writes its EMA network for other tools (a teacher's
    diffusers folder, a student pipeline) and returns where."""
    from .trainer import Trainer

    backend, cfg, train, data = load_run_config(args.config, args.set, args.command)
    out = Path(args.out or Path("runs") / Path(args.config).stem)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(resolved(data["modality"], cfg, train), sort_keys=False))
    import torch

    torch.manual_seed(train.seed)  # network initialisation is part of the run's seed
    objective = backend.teach(cfg, out) if args.command == "teach" else backend.build(cfg, out)
    trainer = Trainer(objective, train, out, resume=args.resume)
    try:
        metrics = trainer.fit()
        if trainer.acc.is_main_process and hasattr(objective, "export") and trainer.step >= train.steps:
            with trainer.ema_weights() as net:
                folder = objective.export(net, out)
            print(f"EMA network exported to {folder}")
    finally:
        trainer.end()
    if trainer.acc.is_main_process and metrics:
        print("metrics:", ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        print(f"run directory: {out}")
    return 0


def cmd_sample(args) -> int:
    import numpy as np
    import torch

    from . import checkpoint as ckpt

    run = Path(args.run_dir)
    if not (run / "config.yaml").is_file():
        raise ConfigError(f"{run} is not a run directory (no config.yaml)")
    if args.n < 1:
        raise ConfigError(f"--n must be positive, got {args.n}")
    backend, cfg, train, _ = load_run_config(run / "config.yaml")
    torch.manual_seed(train.seed)
    objective = backend.build(cfg, run)
    found = ckpt.load_latest(run / "checkpoints")
    if found is None:
        raise ConfigError(f"{run} has no checkpoint to sample from")
    tensors, _ = found
    gen = objective.modules["generator"]
    gen.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    gen.eval()
    torch.manual_seed(args.seed)
    with torch.no_grad():
        samples = backend.sample(objective, gen, args.n)
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp.npy")
    np.save(tmp, samples)
    tmp.replace(out)
    print(f"wrote {args.n} samples of shape {samples.shape[1:]} to {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="unidistill", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for name, what in (("distill", "distil a teacher into a one/few-step student"),
                       ("teach", "train a diffusion teacher on data and export it")):
        d = sub.add_parser(name, help=what)
        d.add_argument("config")
        d.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
        d.add_argument("--out", help="run directory (default runs/<config name>)")
        d.add_argument("--resume", help="resume from this checkpoint folder instead of the run's latest")
        d.set_defaults(fn=cmd_train)
    s = sub.add_parser("sample", help="draw samples from a trained run's EMA generator")
    s.add_argument("run_dir")
    s.add_argument("--n", type=int, default=1000)
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=cmd_sample)
    args = p.parse_args(argv)
    try:
        return args.fn(args)
    except (ConfigError, KeyError, ValueError, FileNotFoundError, CheckpointError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"unidistill: error: {msg}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
