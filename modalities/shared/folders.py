"""Diffusers folders on disk: reading a teacher's scheduler and network, and writing a denoiser's
network with its scheduler config atomically (teachers a run trains, students other tools load)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from .denoiser import DiffusersDenoiser, Parameterisation

NETWORK_FOLDERS = ("unet", "transformer")
# weights load from safetensors only, from local files only: a folder holding only pickled weights (.bin,
# .pt) is refused, since unpickling runs code
SAFE = {"use_safetensors": True, "local_files_only": True}


class WeightsError(ValueError):
    """A weights folder that cannot be read safely: pickled weights only, or a damaged safetensors file."""


def load_weights(cls, folder: Path, **kwargs):
    """cls.from_pretrained(folder) from safetensors only, quietly; a folder whose weights are only pickled
    (.bin, .pt, .ckpt) is refused in one line naming the file, and so is a damaged safetensors file."""
    import diffusers
    import transformers
    from safetensors import SafetensorError

    pickled = sorted(p.name for p in Path(folder).glob("*") if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
    if pickled and not list(Path(folder).glob("*.safetensors")):
        raise WeightsError(f"{folder} holds pickled weights only ({', '.join(pickled)}); loading them could run "
                         "code, so only safetensors are read: convert them (save_pretrained(..., "
                         "safe_serialization=True))")
    levels = diffusers.utils.logging.get_verbosity(), transformers.utils.logging.get_verbosity()
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_error()
    try:
        return cls.from_pretrained(folder, **SAFE, **kwargs)
    except SafetensorError as e:
        names = ", ".join(sorted(p.name for p in Path(folder).glob("*.safetensors")))
        raise WeightsError(f"{folder}: {names or 'the safetensors file'} cannot be read ({e}); "
                         "the file is damaged or incomplete") from None
    finally:
        diffusers.utils.logging.set_verbosity(levels[0])
        transformers.utils.logging.set_verbosity(levels[1])


def read_scheduler(folder: Path) -> tuple[dict, Parameterisation, Any]:
    """(scheduler config, parameterisation, engine process) from folder/scheduler/scheduler_config.json."""
    path = Path(folder) / "scheduler" / "scheduler_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"teacher folder {folder} has no scheduler/scheduler_config.json")
    config = read_json(path)
    if not isinstance(config, dict) or "_class_name" not in config:
        raise ValueError(f"{path} must be a JSON object with a _class_name (the diffusers scheduler class)")
    param, process = Parameterisation.from_scheduler(config)
    return config, param, process


def read_json(path: Path):
    """json.loads of a file, with the file named when it is not valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from None


def find_network(folder: Path) -> tuple[str, str]:
    """(sub-folder, diffusers class name) of the folder's network: unet/ or transformer/."""
    sub = next((s for s in NETWORK_FOLDERS if (Path(folder) / s / "config.json").is_file()), None)
    if sub is None:
        raise FileNotFoundError(f"teacher folder {folder} has no unet/config.json or transformer/config.json")
    config = read_json(Path(folder) / sub / "config.json")
    if not isinstance(config, dict):
        raise ValueError(f"{Path(folder) / sub / 'config.json'} must be a JSON object")
    return sub, config.get("_class_name", "?")


def replace_folder(tmp: Path, folder: Path) -> Path:
    """Move a completely written tmp folder to folder, replacing what was there."""
    old = folder.with_name(folder.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    if old.exists():
        shutil.rmtree(old)
    return folder


def write_network_folder(den: DiffusersDenoiser, scheduler: dict[str, Any], folder: Path,
                         sub: str = "unet") -> Path:
    """Write folder/<sub>/ (config + safetensors) and folder/scheduler/scheduler_config.json, atomically."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    den.net.save_pretrained(tmp / sub, safe_serialization=True)
    (tmp / "scheduler").mkdir(parents=True, exist_ok=True)
    (tmp / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler, indent=2))
    return replace_folder(tmp, folder)
