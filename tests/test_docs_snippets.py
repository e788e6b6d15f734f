"""Every code block of README.md and docs/*.md runs as written (on tiny settings where it trains), so a snippet
that fails as written fails CI.

- `bash` blocks: each `unidistill ...` or `python -m unidistill...` command runs, in one shared working folder
  (with `examples/` linked in) and in document order, README first; `distill`/`teach` get a few fast
  overrides appended (two steps, small evaluations) and `python -m unidistill.modalities.pde.data` small sizes.
- `python` blocks run after their document's commands, in the same folder.
- A block preceded by `<!-- excerpt: PATH -->` must appear in PATH (code lines in order, comments and blank
  lines aside); one preceded by `<!-- not run: REASON -->` is skipped for that reason. Blocks without a
  language (formulas, diagrams, printed output) and `toml`/`yaml` blocks are text.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from example_commands import command_of

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:<!--\s*(excerpt|not run):\s*(.*?)\s*-->\s*\n)?```(\w*)\n(.*?)```", re.S)
FAST = ["train.steps=2", "train.batch_size=4", "train.progress=false", "train.checkpoint_every=1",
        "train.eval_every=0", "train.threads=1", "train.log_every=1"]
NOT_COMMANDS = ("python3 -m venv", "python -m pytest", "pytest", "pip ", "source ")  # set-up: what runs this test
BENCHMARKS = "python benchmarks/"  # hours of work; their scripts are run by their own users, not here


def blocks(doc: Path) -> list[tuple[str | None, str, str, str]]:
    """(marker, marker argument, language, code) for every fenced block of a document."""
    return [(m or None, arg, lang, code) for m, arg, lang, code in BLOCK.findall(doc.read_text())]


def overrides(config: Path) -> list[str]:
    data = yaml.safe_load(config.read_text())
    modality, teach = data.get("modality"), command_of(config) == "teach"
    extra = {("image", False): ["eval.n_samples=20", "real_pool=16"],
             ("image", True): ["eval.n_samples=20", "eval.steps=2"],
             ("text", False): ["teacher_pool=16", "teacher_pool_steps=4", "eval.n_samples=4", "eval.steps=[4]"],
             ("text", True): ["eval.n_samples=4", "eval.steps=4", "eval.held_out_blocks=8", "eval.judge=none"],
             ("pde", False): ["eval.n_samples=4"], ("pde", True): ["eval.n_samples=2", "eval.steps=2"],
             ("3d", False): ["eval.turntable=2", "eval.views=2", "generator.per_prompt=2"],
             ("3d", True): ["eval.n_samples=2", "eval.steps=2"],
             ("mar", False): ["eval.n_samples=20"], ("mar", True): ["eval.n_samples=20", "eval.steps=2"],
             }.get((modality, teach), ["eval.n_samples=200"] if modality == "toy_gmm" else [])
    return [a for o in FAST + extra for a in ("--set", o)]


def parts(code: str) -> list[str]:
    """The commands of a bash block: one per line or per `&&`, without comments, `.venv/bin/` or leading
    environment assignments."""
    out = []
    for line in code.splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        for part in (p.strip() for p in line.split("&&")):
            part = re.sub(r"^(\w+=\S+\s+)+", "", part.replace(".venv/bin/", ""))
            out.append(part)
    return out


def commands(code: str, work: Path, fixtures: dict[str, str]) -> list[list[str]]:
    """The runnable commands of a bash block, with the test's interpreter and tiny settings."""
    out = []
    for part in parts(code):
        if part.startswith(NOT_COMMANDS) or part.startswith(BENCHMARKS):
            continue
        for placeholder, real in fixtures.items():
            part = part.replace(placeholder, real)
        argv = shlex.split(part)
        if argv[0] == "unidistill":
            argv = [sys.executable, "-m", "unidistill.engine.cli", *argv[1:]]
            if argv[3] in ("distill", "teach"):
                argv += overrides(work / argv[4])
        elif argv[:2] in (["python", "-m"], ["python3", "-m"]):
            argv = [sys.executable, *argv[1:]]
            if argv[2] == "unidistill.modalities.pde.data":
                argv += ["--n-train", "64", "--n-test", "8"]
        else:
            raise AssertionError(f"a bash line that is neither a unidistill command nor set-up: {part!r}")
        out.append(argv)
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """One working folder for every document: README's runs feed docs/image.md's Python, and so on."""
    sys.path.insert(0, str(Path(__file__).parent))
    from image_fixtures import tiny_sd_teacher

    root = tmp_path_factory.mktemp("docs")
    (root / "examples").symlink_to(ROOT / "examples")
    (root / "my.jsonl").write_text("\n".join(f'{{"text": "a small corpus line number {i} for a tokenizer"}}'
                                             for i in range(200)) + "\n")
    return root, {"/path/to/stable-diffusion-v1-5": str(tiny_sd_teacher(root / "sd"))}


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_every_snippet_runs_as_written(doc, work, monkeypatch):
    root, fixtures = work
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    ran = 0
    for marker, arg, lang, code in blocks(doc):
        if marker == "not run":
            assert arg, f"{doc.name}: a `not run` marker needs its reason"
            continue
        if marker == "excerpt":
            assert_excerpt(code, ROOT / arg, doc)
            continue
        if lang == "bash":
            for argv in commands(code, root, fixtures):
                res = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=900)
                assert res.returncode == 0, f"{doc.name}: {' '.join(argv)}\n{res.stderr[-2000:]}"
                ran += 1
    for marker, _, lang, code in blocks(doc):  # Python after the document's commands made its runs
        if lang == "python" and marker is None:
            monkeypatch.chdir(root)
            exec(compile(code, f"{doc.name}:snippet", "exec"), {"__name__": "__snippet__"})
            ran += 1
    assert ran or not [b for b in blocks(doc) if b[2] in ("bash", "python") and b[0] is None]


def assert_excerpt(code: str, path: Path, doc: Path) -> None:
    """The block's code lines appear in `path` in order (comments, blank lines and indentation aside)."""
    def lines(text: str) -> list[str]:
        out = []
        for line in text.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                out.append(line)
        return out

    assert path.is_file(), f"{doc.name}: excerpt of a missing file {path}"
    source = lines(path.read_text())
    i = 0
    for line in lines(code):
        while i < len(source) and source[i] != line:
            i += 1
        assert i < len(source), f"{doc.name}: the excerpt line {line!r} is not in {path.relative_to(ROOT)} (in order)"
        i += 1


def test_every_block_is_run_checked_or_marked():
    """Fast: each bash/python block is one the slow test runs, an excerpt of an existing file, or marked."""
    for doc in DOCS:
        for marker, arg, lang, code in blocks(doc):
            if marker == "excerpt":
                assert (ROOT / arg).is_file(), f"{doc.name}: excerpt of a missing file {arg}"
            elif marker == "not run":
                assert arg, f"{doc.name}: a `not run` marker needs its reason"
            elif lang == "bash":
                for part in parts(code):
                    ok = part.startswith(("unidistill", "python -m unidistill", "python3 -m unidistill", BENCHMARKS)
                                         + NOT_COMMANDS)
                    assert ok, f"{doc.name}: bash line the snippet test cannot run: {part!r}"


def test_the_pearson_example_works():
    """docs/architecture.md's worked example (a): the Pearson chi^2 entry, applied in a fresh process, gives
    h = r^2 f'' and r h'(r) by autograd, and f-distill accepts it by name."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    code = re.search(r"fdiv\.py`:\n\n<!-- not run:.*?-->\n```python\n(.*?)```", doc, re.S).group(1)
    script = f"""
import torch
from unidistill.engine.divergences import DIVERGENCES, F_FUNCTIONS
from unidistill.engine.divergences.fdiv import _add
{code}
fn = F_FUNCTIONS.get("pearson_chi2")
r = torch.linspace(0.3, 3.0, 11, dtype=torch.float64, requires_grad=True)
f = fn.f(torch.log(r))
(d1,) = torch.autograd.grad(f.sum(), r, create_graph=True)
(d2,) = torch.autograd.grad(d1.sum(), r)
l = torch.log(r.detach())
assert torch.allclose(fn.h(l), r.detach() ** 2 * d2), "h"
assert torch.allclose(fn.f_prime(l), d1.detach()), "f'"
rr = r.detach().clone().requires_grad_(True)
(dh,) = torch.autograd.grad(fn.h(torch.log(rr)).sum(), rr)
assert torch.allclose(fn.dh(l), r.detach() * dh), "r h'"
DIVERGENCES.get("fdiv")(f="pearson_chi2", log_ratio_clip=5.0)
print("ok")
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-1500:]
