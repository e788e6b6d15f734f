"""The conformance suite: every registered backend (the `unidistill.backends` entry points, and every folder
under tests/backends/) against every divergence and estimator. A pair the backend accepts trains two steps
through the command line, exports and samples; a pair it cannot run is refused before training, with one
line on stderr and exit code 2. A new backend is covered by registering it (its `smoke_config`).

The matrix is printed (pytest -s) and must equal the table in docs/architecture.md for the shipped backends."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from unidistill.engine.backend import backend_names, get_backend
from unidistill.engine.cli import main
from unidistill.engine.divergences import DIVERGENCES, ESTIMATORS

ROOT = Path(__file__).parents[1]
HERE = Path(__file__).parent / "backends"
TEST_BACKENDS = sorted(p.parent.name for p in HERE.glob("*/backend.py"))


def _ref(name: str) -> str:
    """modality: package.module:Class for a backend folder in the test tree."""
    cls = re.search(r"^class (\w+)\(Backend\)", (HERE / name / "backend.py").read_text(), re.M).group(1)
    return f"backends.{name}.backend:{cls}"


REFS = {**{n: n for n in backend_names()}, **{n: _ref(n) for n in TEST_BACKENDS}}
NAMES = DIVERGENCES.names() + ESTIMATORS.names()
TRAIN = {"steps": 2, "batch_size": 4, "progress": False, "checkpoint_every": 1, "log_every": 1}
MATRIX: dict[str, dict[str, str]] = {}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("conformance")


@pytest.mark.parametrize("divergence", NAMES)
@pytest.mark.parametrize("backend", sorted(REFS))
def test_backend_runs_or_refuses_each_divergence(backend, divergence, workdir, capsys):
    ref = REFS[backend]
    b = get_backend(ref)
    cfg = {"modality": ref, **b.smoke_config(workdir / "smoke"), "train": TRAIN}
    path = workdir / f"{backend}_{divergence}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = workdir / "runs" / f"{backend}_{divergence}"
    capsys.readouterr()
    code = main(["distill", str(path), "--out", str(run), "--set", f"distill.divergence={{name: {divergence}}}"])
    out, err = capsys.readouterr()
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("unidistill: error: config key distill."), lines
        assert not list(run.glob("checkpoints/*")), "refused after training started"
        assert f"'{divergence}'" in lines[0] and "choose one of" in lines[0], lines[0]  # names it and the choices
        MATRIX.setdefault(backend, {})[divergence] = "refused"
        return
    assert code == 0, err
    assert (run / "metrics.json").is_file() and list((run / "checkpoints").glob("step_*"))
    exported = re.search(r"EMA network exported to (\S+)", out)
    assert exported is None or Path(exported.group(1)).exists()
    samples = run / "s.npy"
    assert main(["sample", str(run), "--n", "3", "--out", str(samples)]) == 0, capsys.readouterr().err
    assert np.load(samples).shape[0] == 3
    MATRIX.setdefault(backend, {})[divergence] = "runs"


def matrix_table(backends: list[str]) -> str:
    head = "| backend | " + " | ".join(f"`{n}`" for n in NAMES) + " |"
    rows = [head, "| --- |" + " --- |" * len(NAMES)]
    for b in backends:
        rows.append(f"| {b} | " + " | ".join(MATRIX[b][n] for n in NAMES) + " |")
    return "\n".join(rows)


def test_the_matrix_is_the_one_in_the_docs():
    """Runs after the parametrised tests (file order): the shipped backends' matrix is docs/architecture.md's."""
    shipped = sorted(backend_names())
    if any(len(MATRIX.get(b, {})) < len(NAMES) for b in shipped):
        pytest.skip("the conformance matrix is incomplete (run the whole file)")
    table = matrix_table(shipped)
    print("\n" + matrix_table(sorted(MATRIX)))
    doc = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"<!-- conformance:start -->\n(.*?)\n<!-- conformance:end -->", doc, re.S)
    assert block is not None and block.group(1).strip() == table, "docs/architecture.md should hold:\n" + table
    for b in TEST_BACKENDS:  # the worked example accepts every continuous divergence
        assert all(MATRIX[b][n] == "runs" for n in DIVERGENCES.names())


@pytest.mark.parametrize("backend,variant", [(b, {}) for b in sorted(REFS)] + [("toy_markov", {"ratio": "oracle"})])
def test_declared_offers_are_what_the_backend_builds(backend, variant, workdir):
    """Backend.offers (read from the config before anything loads) must describe the parts build() hands the
    engine: the same fake-score and discriminator options and rewards, and every real source it builds
    (a declared source may depend on the teacher, such as image's digits `data`)."""
    from unidistill.engine.cli import load_run_config

    ref = REFS[backend]
    path = workdir / f"{backend}_offers{len(variant)}.yaml"
    path.write_text(yaml.safe_dump({"modality": ref, **get_backend(ref).smoke_config(workdir / "smoke"), **variant,
                                    "train": TRAIN}))
    run = load_run_config(path)
    declared = run.backend.offers(run.cfg)
    assert declared is not None, f"{backend} declares no offers: its distill: typos wait for the teacher"
    built = run.backend.build(run.cfg, workdir / f"{backend}_offers_run{len(variant)}").offers
    assert (declared.fake, declared.discriminator, declared.rewards) == (built.fake, built.discriminator,
                                                                       built.rewards)
    assert set(built.real) <= set(declared.real), (built.real, declared.real)
