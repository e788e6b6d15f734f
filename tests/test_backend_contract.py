"""The backend contract: backends are found by entry point (or package.module:Attribute), a command imports
only the backend its config names and validates the config before torch loads, a missing extra is named in
one line, and `unidistill sample` builds the generator and its decoding only."""
from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from example_commands import command_of

from unidistill.engine.backend import Backend, backend_names, get_backend
from unidistill.engine.cli import main
from unidistill.engine.config import ConfigError

ROOT = Path(__file__).parents[1]
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))
HEAVY = ("torch", "diffusers", "transformers", "accelerate", "scipy", "sklearn")
FOLDERS = {"3d": "threed"}  # a package name cannot start with a digit


def test_the_shipped_backends_are_entry_points():
    assert backend_names() == ["3d", "image", "mar", "pde", "text", "toy_gmm", "toy_markov"]
    for name in backend_names():
        b = get_backend(name)
        assert isinstance(b, Backend) and b.family in ("continuous", "discrete")
        folder = FOLDERS.get(name, name)  # one folder per modality, named after it
        assert Path(sys.modules[type(b).__module__].__file__).parent.name == folder


def test_validating_a_config_imports_no_other_backend_and_not_torch():
    """Every example validates with only its own backend's config module imported, and nothing heavy."""
    code = f"""
import sys, json
from unidistill.engine.cli import load_run_config
out = {{}}
for path, command in {[(str(p), command_of(p)) for p in EXAMPLES]!r}:
    before = set(sys.modules)
    run = load_run_config(path, command=command)
    new = set(sys.modules) - before
    out[path] = [run.modality, sorted(m for m in new if m.startswith("unidistill.modalities.")),
                 sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))]
    for m in [m for m in sys.modules if m.startswith("unidistill.modalities.")]:
        del sys.modules[m]
print(json.dumps(out))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    for path, (modality, imported, heavy) in json.loads(res.stdout).items():
        assert heavy == [], (path, heavy)
        folder = FOLDERS.get(modality, modality)
        assert all(m == "unidistill.modalities" or m.startswith(f"unidistill.modalities.{folder}")
                   for m in imported), (path, imported)


def test_a_missing_extra_is_named_in_one_line(monkeypatch, tmp_path, capsys):
    real = importlib.metadata.version

    def version(name):
        if name == "diffusers":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr("unidistill.engine.backend.metadata.version", version)
    with pytest.raises(ConfigError, match=r"^modality 'image' needs the image extra: pip install 'unidistill\[image\]' "
                                          r"\(missing: diffusers\)$"):
        get_backend("image")
    get_backend("toy_gmm")  # a modality without an extra is unaffected
    assert main(["distill", str(ROOT / "examples/image/digits_sim.yaml"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["unidistill: error: modality 'image' needs the image extra: pip install 'unidistill[image]' "
                   "(missing: diffusers)"]


def test_a_backend_outside_the_package_and_bad_names(tmp_path):
    b = get_backend("backends.gauss1d.backend:Gauss1DBackend")
    assert type(b).__name__ == "Gauss1DBackend"
    with pytest.raises(ConfigError,
                       match="unknown modality 'images3d'; choose one of: 3d, image, mar, pde, text, toy_gmm"):
        get_backend("images3d")
    with pytest.raises(ConfigError, match="'json:dumps' is not a unidistill Backend"):
        get_backend("json:dumps")
    with pytest.raises(ConfigError, match="cannot be imported: missing package no_such_package"):
        get_backend("no_such_package.mod:Backend")


def test_a_key_given_twice_is_refused(tmp_path, capsys):
    path = tmp_path / "twice.yaml"
    path.write_text("modality: toy_gmm\nmixture: {ring: {modes: 4, radius: 2.0, std: 0.3}}\n"
                    "train: {steps: 2}\ntrain: {steps: 3}\n")
    assert main(["distill", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "duplicate key 'train'" in err[0] and "line 4" in err[0]


def test_sample_builds_the_generator_only(tmp_path):
    """An f-distill image run: `sample` loads the EMA generator and the teacher's decoding, but neither the
    teacher pool (the discriminator's real side) nor the fake score or the discriminator."""
    from unidistill.modalities.image.io import write_tiny_teacher

    teacher = write_tiny_teacher(tmp_path / "teacher")
    cfg = {"modality": "image", "teacher": str(teacher), "real_pool": 8, "eval": {"n_samples": 10},
           "distill": {"divergence": {"name": "fdiv"}},
           "train": {"steps": 2, "batch_size": 4, "progress": False, "checkpoint_every": 1}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    assert main(["distill", str(tmp_path / "c.yaml"), "--out", str(run)]) == 0
    (run / "teacher_pool.safetensors").unlink()
    import unidistill.modalities.image.distill as image_distill

    called = []
    original = image_distill.build_distill
    image_distill.build_distill = lambda *a: called.append(a) or original(*a)
    try:
        assert main(["sample", str(run), "--n", "5", "--out", str(tmp_path / "a.npy"), "--seed", "1"]) == 0
        assert main(["sample", str(run), "--n", "5", "--out", str(tmp_path / "b.npy"), "--seed", "2"]) == 0
        assert main(["sample", str(run), "--n", "5", "--out", str(tmp_path / "c.npy"), "--seed", "1"]) == 0
    finally:
        image_distill.build_distill = original
    assert not called and not (run / "teacher_pool.safetensors").exists()
    import numpy as np

    a, b, c = (np.load(tmp_path / f"{k}.npy") for k in "abc")
    assert a.shape == (5, 1, 8, 8) and (a == c).all() and not (a == b).all()  # --seed reaches the sampler
    assert np.load(tmp_path / "a.conditions.npy").tolist() == [0, 1, 2, 3, 4]  # the class of each sample, beside
    assert main(["sample", str(run), "--n", "5", "--out", str(tmp_path / "d.npy"), "--seed", "1", "--images"]) == 0
    d = np.load(tmp_path / "d.npy")
    assert d.shape == (5, 8, 8, 1) and d.min() >= 0 and d.max() <= 1  # as the exported pipeline returns them
    np.testing.assert_allclose(d, np.clip(a / 2 + 0.5, 0, 1).transpose(0, 2, 3, 1))
    assert json.loads((run / "metrics.json").read_text())


def test_a_nested_section_keeps_its_backends_defaults():
    """Setting one key of `distill:` keeps the backend's other recipe defaults (not the engine's class
    defaults); a key set to null is null; sections without a default instance use the class defaults."""
    from unidistill.engine.config import build
    from unidistill.engine.recipe import ContinuousRecipe
    from unidistill.modalities.image.config import ImageConfig
    from unidistill.modalities.toy_gmm.config import GMMConfig

    cfg = build(ImageConfig, {"distill": {"divergence": {"name": "ikl"}}}, "config")
    assert cfg.distill.divergence == {"name": "ikl"}
    assert cfg.distill.time_sampler == {"name": "lognormal", "p_mean": -0.4, "p_std": 1.6}
    assert cfg.distill.aux_time_sampler == {"name": "lognormal", "p_mean": -1.2, "p_std": 1.2}
    assert ContinuousRecipe().time_sampler == {"name": "lognormal"}  # the engine's own default differs
    toy = build(GMMConfig, {"mixture": {"ring": {"modes": 2, "radius": 1.0, "std": 0.1}},
                            "distill": {"aux_time_sampler": None, "fake": {"hidden": 8}}}, "config")
    assert toy.distill.real == "data" and toy.distill.aux_time_sampler is None and toy.distill.fake == {"hidden": 8}
    assert toy.distill.divergence == {"name": "sid"}
    fresh = build(GMMConfig, {"mixture": {"ring": {"modes": 2, "radius": 1.0, "std": 0.1}}}, "config")
    fresh.distill.divergence["name"] = "changed"  # defaults are copied, never shared between configs
    assert build(GMMConfig, {"mixture": {}, "distill": {}}, "config").distill.divergence == {"name": "sid"}


def test_bad_names_and_sections_fail_in_one_line(tmp_path, capsys):
    """Non-string registry names, an empty train.lr prefix, and `sample` pointed at a teacher run."""
    ring = str(ROOT / "examples/toy/ring8_sid.yaml")
    for override, expected in (("distill.divergence={name: [sid]}", "unknown divergence ['sid']; choose one of"),
                               ("train.lr={generator: 1.0e-3, generator.: 1.0e-2}", "names no parameter prefix")):
        assert main(["distill", ring, "--out", str(tmp_path / "r"), "--set", override]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err
    run = tmp_path / "teach_run"
    run.mkdir()
    (run / "config.yaml").write_text((ROOT / "examples/image/digits_teacher.yaml").read_text())
    assert main(["sample", str(run), "--out", str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a teacher run (unidistill teach)" in err[0], err


def test_a_partial_name_options_section_adjusts_the_default(tmp_path):
    """`--set distill.time_sampler.u_max=0.8` on a backend default: options without a name merge into it."""
    from unidistill.engine.cli import load_run_config

    path = ROOT / "examples/pde/darcy_phys_instruct.yaml"
    data = yaml.safe_load(path.read_text())
    del data["distill"]["time_sampler"]  # rely on the PDE backend's default (karras, 64-point grid)
    tmp = tmp_path / "c.yaml"
    tmp.write_text(yaml.safe_dump(data))
    run = load_run_config(tmp, ["distill.time_sampler.u_max=0.8"])
    assert run.cfg.distill.time_sampler == {"name": "karras", "n_grid": 64, "u_max": 0.8}
    run = load_run_config(tmp, ["distill.time_sampler={name: uniform}"])
    assert run.cfg.distill.time_sampler == {"name": "uniform"}
