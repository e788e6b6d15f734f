"""PDE datasets from the solvers: one command per PDE, reproducible from a seed, written atomically.

    python -m unidistill.modalities.pde.data darcy --out runs/pde_data/darcy32 [--size 32] [--n-train 10000]

A dataset folder holds train.npz and test.npz (array `fields`: (n, C, N, N) float64, physical units)
and meta.json (the PDE and its options, grid size, seed, channel names, residual floor of test)."""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .problems import PDES, options, relative_residual


@dataclass
class Dataset:
    """A loaded dataset folder: the PDE object, fields per split (n, C, N, N) float64, and its metadata."""

    pde: object
    train: np.ndarray
    test: np.ndarray
    meta: dict


def build_pde(name: str, **opts):
    """PDES[name](**opts) with a one-line error for unknown names or options."""
    cls = PDES.get(name)
    try:
        return cls(**opts)
    except TypeError as e:
        raise ValueError(f"pde {name!r}: {e}") from None


def generate(pde, size: int, n: int, seed: int, *, chunk: int = 256, progress: bool = True) -> np.ndarray:
    """n solver samples (n, C, size, size) float64; the stream depends only on (seed, n, chunk)."""
    from tqdm.auto import tqdm

    if size < 8:
        raise ValueError(f"grid size must be >= 8, got {size}")
    rng = np.random.default_rng(seed)
    out = []
    with tqdm(total=n, desc=f"{pde.name} {size}x{size}", disable=not progress, leave=False) as bar:
        for lo in range(0, n, chunk):
            m = min(chunk, n - lo)
            out.append(pde.generate(m, size, rng))
            bar.update(m)
    return np.concatenate(out)


def _save_npz(path: Path, fields: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, fields=fields)
    os.replace(tmp, path)


def make_dataset(pde, out: str | Path, *, size: int = 32, n_train: int = 10000, n_test: int = 200,
                 seed: int = 0, progress: bool = True) -> Path:
    """Write out/{train,test}.npz and out/meta.json (test uses seed + 1); returns the folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    test = generate(pde, size, n_test, seed + 1, progress=progress)
    train = generate(pde, size, n_train, seed, progress=progress)
    floor = relative_residual(pde, torch.from_numpy(test))
    floor32 = relative_residual(pde, torch.from_numpy(test).float())
    meta = {"pde": pde.name, "options": options(pde), "size": size, "channels": list(pde.channels),
            "seed": seed, "n_train": n_train, "n_test": n_test,
            "residual_floor": {"float64": float(floor.mean()), "float32": float(floor32.mean())}}
    _save_npz(out / "test.npz", test)
    _save_npz(out / "train.npz", train)
    tmp = out / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, out / "meta.json")  # written last: a folder with meta.json is complete
    return out


def load_dataset(folder: str | Path) -> Dataset:
    """Read a folder written by make_dataset; errors name the missing or malformed file."""
    folder = Path(folder)
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder} is not a PDE dataset (no meta.json); write one with "
                                "`python -m unidistill.modalities.pde.data PDE --out FOLDER`")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{meta_path} is not valid JSON ({e})") from None
    missing = [k for k in ("pde", "size") if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise ValueError(f"{meta_path} lacks {', '.join(missing)}")
    try:
        pde = build_pde(meta["pde"], **meta.get("options", {}))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{meta_path}: {e.args[0] if isinstance(e, KeyError) else e}") from None
    splits = {}
    for split in ("train", "test"):
        path = folder / f"{split}.npz"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing")
        try:
            with np.load(path) as f:  # allow_pickle stays False: object arrays are refused
                if "fields" not in f:
                    raise ValueError(f"{path} has no array 'fields'")
                x = np.asarray(f["fields"], dtype=np.float64)
        except (OSError, EOFError, ValueError) as e:
            if str(path) in str(e):
                raise
            raise ValueError(f"{path} is not a readable .npz of numbers ({str(e).splitlines()[0][:100]})") from None
        want = (len(pde.channels), meta["size"], meta["size"])
        if x.ndim != 4 or x.shape[1:] != want or not np.all(np.isfinite(x)):
            raise ValueError(f"{path}: 'fields' must be finite (n, {want[0]}, {want[1]}, {want[2]}), got {x.shape}")
        splits[split] = x
    return Dataset(pde, splits["train"], splits["test"], meta)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m unidistill.modalities.pde.data", description=__doc__.split("\n")[0])
    ap.add_argument("pde", choices=PDES.names())
    ap.add_argument("--out", required=True, help="dataset folder to write")
    ap.add_argument("--size", type=int, default=32, help="grid points per side (32 default, 64 optional)")
    ap.add_argument("--n-train", type=int, default=10000)
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="PDE option, e.g. k=2.0 (helmholtz), coefficient=lognormal (darcy)")
    args = ap.parse_args(argv)
    opts = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--option {item!r}: expected KEY=VALUE")
        try:
            opts[key] = json.loads(value)
        except json.JSONDecodeError:
            opts[key] = value
    try:
        pde = build_pde(args.pde, **opts)
        out = make_dataset(pde, args.out, size=args.size, n_train=args.n_train, n_test=args.n_test, seed=args.seed)
    except (ValueError, RuntimeError) as e:
        ap.exit(2, f"error: {e}\n")
    meta = json.loads((out / "meta.json").read_text())
    print(f"wrote {out}: {args.n_train} train + {args.n_test} test samples of {args.pde} at {args.size}x{args.size}; "
          f"test residual floor {meta['residual_floor']['float64']:.2e} (float64), "
          f"{meta['residual_floor']['float32']:.2e} (float32)")


if __name__ == "__main__":
    main()
