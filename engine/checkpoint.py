"""Atomic, verifiable checkpoints: safetensors for every tensor (weights, EMA, optimizer state,
RNG state), JSON for the rest, a manifest of SHA-256 digests, and a `latest` pointer. A sharded run
(`train.parallel: fsdp`) adds one `shard-RRRRR-of-WWWWW.safetensors` per process with its parts of the sharded
tensors; loading joins them, so any number of processes can resume.

A checkpoint is written to `step_XXXXXXXX.tmp/`, fsynced, then renamed into place; only then does
`latest` move (itself replaced atomically) and only then are old checkpoints pruned, so a kill
at any moment leaves the previous good checkpoint intact. No pickle is ever loaded.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch and safetensors load on first use, so the CLI can report bad configs at once
    from torch import Tensor

TENSORS, META, MANIFEST, LATEST = "state.safetensors", "meta.json", "manifest.json", "latest"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated or corrupted."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, obj) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())


def _unshared(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """CPU copies safetensors accepts: a tensor sharing storage with an earlier one (tied weights,
    e.g. a language model's input and output embeddings) is cloned; loading re-ties them."""
    out, seen = {}, set()
    for k, v in tensors.items():
        v = v.detach().contiguous().cpu()
        ptr = v.untyped_storage().data_ptr()
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out


def shard_name(rank: int, world: int) -> str:
    return f"shard-{rank:05d}-of-{world:05d}.safetensors"


def staging(root: str | Path, step: int) -> Path:
    """The folder checkpoint `step` is written into before it is renamed into place."""
    return Path(root) / f"step_{step:08d}.tmp"


def begin(root: str | Path, step: int) -> Path:
    """Create (empty) the staging folder of checkpoint `step`."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = staging(root, step)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def write_shard(tmp: Path, rank: int, world: int, tensors: dict[str, Tensor]) -> None:
    """One process's shards of a sharded run (the local parts of its sharded tensors), written and fsynced."""
    from safetensors.torch import save_file

    path = tmp / shard_name(rank, world)
    save_file(_unshared(tensors), str(path))
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def finish(root: str | Path, tmp: Path, step: int, tensors: dict[str, Tensor], meta: dict, keep: int = 2) -> Path:
    """Write the whole tensors, meta and the manifest of every file in `tmp`; rename it into place, move
    `latest`, prune to the newest `keep` checkpoints."""
    from safetensors.torch import save_file

    root = Path(root)
    final = root / f"step_{step:08d}"
    save_file(_unshared(tensors), str(tmp / TENSORS))
    _write_json(tmp / META, {**meta, "step": step})
    files = sorted(p.name for p in tmp.iterdir() if p.name != MANIFEST)
    _write_json(tmp / MANIFEST, {name: _sha256(tmp / name) for name in files})
    _fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    pointer = root / (LATEST + ".tmp")
    pointer.write_text(final.name)
    os.replace(pointer, root / LATEST)
    _fsync_dir(root)
    for old in checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save(root: str | Path, step: int, tensors: dict[str, Tensor], meta: dict, keep: int = 2) -> Path:
    """Write checkpoint `step` under root atomically; keep the newest `keep` checkpoints."""
    return finish(root, begin(root, step), step, tensors, meta, keep)


def _merge_shards(path: Path, meta: dict, tensors: dict[str, Tensor]) -> None:
    """Add the whole of every sharded tensor: its processes' parts concatenated along dim 0 in rank order
    (FSDP2's even split), checked against the shape `meta["shards"]` recorded. Any number of processes can then
    resume (each takes its own part again)."""
    import torch
    from safetensors.torch import load_file

    info = meta["shards"]
    world, shapes = int(info["world"]), info["keys"]
    parts: dict[str, list] = {k: [] for k in shapes}
    for rank in range(world):
        for k, v in load_file(str(path / shard_name(rank, world))).items():
            parts[k].append(v)
    for k, shape in shapes.items():
        if not parts[k]:
            raise KeyError(f"{k} (in no shard)")
        whole = torch.cat(parts[k], 0)
        if list(whole.shape) != list(shape):
            raise CheckpointError(f"checkpoint {path}: the shards of {k} add up to {list(whole.shape)}, not {shape}")
        tensors[k] = whole


def checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoint folders under root, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = (p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_") and not p.name.endswith(".tmp"))
    return sorted(found)


def verify(path: Path) -> None:
    """Raise CheckpointError naming the file if anything in the checkpoint is missing or altered."""
    manifest = path / MANIFEST
    if not manifest.is_file():
        raise CheckpointError(f"checkpoint {path} has no {MANIFEST}: it was not completely written")
    try:
        digests = json.loads(manifest.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"checkpoint {path}: {MANIFEST} is corrupted ({e})") from None
    for name, digest in digests.items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"checkpoint {path} is missing {name}")
        if _sha256(f) != digest:
            raise CheckpointError(f"checkpoint {path}: {name} is truncated or corrupted (SHA-256 mismatch)")


def non_finite(tensors: dict[str, Tensor]) -> str | None:
    """The name of the first floating-point tensor holding NaN or inf (RNG states excluded), or None."""
    import torch

    for k, v in tensors.items():
        if not k.startswith("rng.") and v.is_floating_point() and not bool(torch.isfinite(v).all()):
            return k
    return None


def load(path: str | Path) -> tuple[dict[str, Tensor], dict]:
    """Verify and load one checkpoint folder; returns (tensors, meta). Refuses contents that do not parse or
    hold non-finite values, even when the manifest matches them."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} does not exist" if not path.exists() else
                              f"checkpoint {path} is a file; a checkpoint is a folder RUN/checkpoints/step_*")
    if (path / "checkpoints").is_dir() and not (path / MANIFEST).exists():
        found = checkpoints(path / "checkpoints")
        raise CheckpointError(f"{path} is a run directory; --resume takes one of its checkpoint folders "
                              f"(RUN/checkpoints/step_*){f', e.g. {found[-1]}' if found else ''}")
    verify(path)
    try:
        tensors = load_file(str(path / TENSORS))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"checkpoint {path}: {TENSORS} cannot be read ({str(e).splitlines()[0]})") from None
    try:
        meta = json.loads((path / META).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise CheckpointError(f"checkpoint {path}: {META} cannot be read ({str(e).splitlines()[0]})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("step"), int):
        raise CheckpointError(f"checkpoint {path}: {META} has no step; it was not written by unidistill")
    if isinstance(meta.get("shards"), dict):
        try:
            _merge_shards(path, meta, tensors)
        except (SafetensorError, OSError, KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"checkpoint {path}: its shards cannot be read ({str(e).splitlines()[0]})") from None
    bad = non_finite(tensors)
    if bad is not None:
        raise CheckpointError(f"checkpoint {path} holds non-finite values in {bad}")
    return tensors, meta


def latest(root: str | Path) -> Path | None:
    """The checkpoint `latest` points to (or None if the run has none)."""
    root = Path(root)
    pointer = root / LATEST
    if not pointer.is_file():
        found = checkpoints(root)
        return found[-1] if found else None
    return root / pointer.read_text().strip()


def load_latest(root: str | Path, resumable: bool = True) -> tuple[dict[str, Tensor], dict] | None:
    """Load the newest checkpoint; if it is bad, fail with an error that names the previous good one (and,
    for training commands, how to resume from it)."""
    path = latest(root)
    if path is None:
        return None
    try:
        return load(path)
    except CheckpointError as err:
        good = [p for p in checkpoints(root) if p != path and p.name < path.name and _is_good(p)]
        how = f": resume from it with --resume {good[-1]}" if resumable else ""
        hint = (f"; the previous good checkpoint {good[-1]} is kept{how}" if good
                else "; no earlier good checkpoint exists")
        raise CheckpointError(f"{err}{hint}") from None


def _is_good(path: Path) -> bool:
    """Whether a checkpoint verifies and loads with finite values."""
    try:
        load(path)
        return True
    except CheckpointError:
        return False
