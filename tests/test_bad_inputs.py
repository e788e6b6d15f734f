"""The bad-input suite: every case of tests/bad_inputs_catalogue.py (over 400 malformed configs, values, files,
folders, teacher folders, corpora, datasets and checkpoints across all backends) fails before training with
exit code 2 and one stderr line `unidistill: error: ...` that names what is wrong, and writes no checkpoint.

Cases run in this process through `unidistill.engine.cli.main` (their set-up runs, such as a finished run to
damage, use a child process). `pytest tests/test_bad_inputs.py -m slow -s` prints the counts."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import bad_inputs_catalogue as catalogue

from unidistill.engine.cli import main

IDS = [c["id"] for c in catalogue.CASES]
RESULTS: Counter = Counter()
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    from image_fixtures import tiny_digits_teacher
    from pde_fixtures import tiny_pde_teacher
    from text_fixtures import tiny_judge, tiny_mdlm

    root = tmp_path_factory.mktemp("bad_input_teachers")
    return {"teacher_image": str(tiny_digits_teacher(root / "image")), "teacher_text": str(tiny_mdlm(root / "mdlm")),
            "judge_text": str(tiny_judge(root / "judge")), "teacher_pde": str(tiny_pde_teacher(root / "pde"))}


def fill(text: str, names: dict[str, str]) -> str:
    for k, v in names.items():
        text = text.replace("{" + k + "}", v)
    return text


def readonly_as_root() -> bool:
    """Root writes through mode 555; those cases need a child process without CAP_DAC_OVERRIDE."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.mark.parametrize("case", catalogue.CASES, ids=IDS)
def test_bad_input_fails_before_training_in_one_line(case, teachers, tmp_path, capsys, monkeypatch):
    names = {**teachers, "tmp": str(tmp_path)}
    for rel, text in case.get("files", {}).items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(fill(text, names))
    if "setup" in case:
        getattr(catalogue, case["setup"]["function"])(tmp_path, {k: Path(v) for k, v in names.items()})
    args = [fill(a, names) for a in case["args"]]
    monkeypatch.chdir(tmp_path)
    if case.get("setup", {}).get("function") == "setup_readonly_dir":
        code, lines = _child_without_root_writes(args)
    else:
        capsys.readouterr()
        code = main(args)
        lines = capsys.readouterr().err.strip().splitlines()
    RESULTS["one-line" if code == 2 and len(lines) == 1 else "other"] += 1
    assert code == 2, f"exit {code}; stderr: {lines[-3:]}"
    assert len(lines) == 1 and lines[0].startswith("unidistill: error: "), lines
    message = lines[0]
    for k, v in names.items():
        message = message.replace(v, "{" + k + "}")
    assert case["expect"] in message, f"{case['expect']!r} not named in: {message}"
    run = tmp_path / "run"
    assert not list(run.glob("checkpoints/step_*")), "a checkpoint was written"


def _child_without_root_writes(args: list[str]) -> tuple[int, list[str]]:
    prefix = []
    if readonly_as_root():
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: a read-only folder cannot be made")
        prefix = ["setpriv", "--inh-caps=-dac_override", "--bounding-set=-dac_override"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([*prefix, sys.executable, "-m", "unidistill.engine.cli", *args], env=env,
                         capture_output=True, text=True, timeout=300)
    return res.returncode, res.stderr.strip().splitlines()


def test_report_the_counts():
    """Printed with -s after the cases (file order): how many of the catalogue's cases were refused in one line."""
    if sum(RESULTS.values()):
        print(f"\nbad inputs: {sum(RESULTS.values())} tried, {RESULTS['one-line']} refused in one line before "
              f"training, {RESULTS['other']} not")
