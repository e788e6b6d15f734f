"""The "python" text corpus, built offline from what every CPython installation ships: the documentation
topics of `pydoc_data.topics` (one document per topic) and the docstrings of the standard library read
with `ast` (one document per module: its module, class and function docstrings in source order).

Cleaning: docstrings are dedented (`inspect.cleandoc`, as `ast.get_docstring` does), trailing spaces and
runs of blank lines are removed, docstrings shorter than MIN_CHARS are dropped, and exact duplicates
(compared with whitespace collapsed and case folded) are kept once, the first in document order. Tests,
IDLE, lib2to3, turtledemo, site-packages and bundled wheels are excluded.

Split by document: a document is held out when the SHA-256 of its id falls in the lowest 10%, so a
module's docstrings never straddle the splits and the split does not depend on the other documents.

    python -m unidistill.modalities.text.python_corpus [--rebuild]

builds it (a few seconds), prints its statistics and caches it as JSON lines under
$UNIDISTILL_CACHE (default ~/.cache/unidistill) in a file named after the Python version and the
builder's version; `load_python_corpus()` reads the cache or builds it."""
from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import re
import sys
import sysconfig
from pathlib import Path

log = logging.getLogger(__name__)
BUILDER_VERSION = 1  # bump when the cleaning changes: the cache file name changes with it
MIN_CHARS = 32
HELD_OUT_SHARE = 0.1
EXCLUDED_DIRS = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "site-packages", "dist-packages",
                 "_bundled", "__pycache__"}


def cache_path() -> Path:
    root = Path(os.environ.get("UNIDISTILL_CACHE", Path.home() / ".cache" / "unidistill"))
    v = sys.version_info
    return root / "corpora" / f"python-{v.major}.{v.minor}.{v.micro}-b{BUILDER_VERSION}.jsonl"


def clean(text: str) -> str:
    """Trailing spaces per line removed, at most one blank line in a row, stripped."""
    text = "\n".join(line.rstrip() for line in text.expandtabs(4).splitlines())
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def held_out(doc_id: str) -> bool:
    digest = int(hashlib.sha256(doc_id.encode()).hexdigest()[:8], 16)
    return digest < HELD_OUT_SHARE * 16 ** 8


def module_docstrings(source: str) -> list[str]:
    """Docstrings of a module, its classes and functions, depth first in source order."""
    out: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                out.append(doc)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return out


def stdlib_modules(root: Path | None = None) -> list[tuple[str, Path]]:
    """(id, path) of every standard-library source file outside the excluded folders, sorted."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    files = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if not EXCLUDED_DIRS & set(rel.parts[:-1]) and not rel.name.startswith("test_"):
            files.append((f"stdlib:{rel.as_posix()}", path))
    return files


def build_documents(stdlib: Path | None = None, topics: dict[str, str] | None = None) -> list[dict]:
    """[{"id", "text", "split"}], deterministic for a given Python installation (by default its stdlib
    folder and pydoc topics)."""
    if topics is None:
        from pydoc_data.topics import topics

    raw: list[tuple[str, list[str]]] = [(f"pydoc:{k}", [topics[k]]) for k in sorted(topics)]
    for doc_id, path in stdlib_modules(stdlib):
        try:
            raw.append((doc_id, module_docstrings(path.read_text(encoding="utf-8"))))
        except (SyntaxError, UnicodeDecodeError, ValueError) as e:  # a few files are templates or other encodings
            log.info("python corpus: skipped %s (%s)", doc_id, type(e).__name__)
    seen: set[str] = set()
    docs = []
    for doc_id, parts in raw:
        kept = []
        for part in map(clean, parts):
            key = " ".join(part.split()).casefold()
            if len(part) >= MIN_CHARS and key not in seen:
                seen.add(key)
                kept.append(part)
        if kept:
            docs.append({"id": doc_id, "text": "\n\n".join(kept),
                         "split": "held_out" if held_out(doc_id) else "train"})
    return docs


def load_python_corpus(rebuild: bool = False) -> list[dict]:
    """The corpus from its cache, built and cached (atomically) when missing or when `rebuild`."""
    path = cache_path()
    if path.is_file() and not rebuild:
        try:
            return [json.loads(line) for line in path.read_text().splitlines()]
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("python corpus: the cache %s is unreadable; rebuilding it", path)
    docs = build_documents()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
        tmp.replace(path)
    except OSError as e:  # a read-only home: the corpus is rebuilt each time (a few seconds), nothing fails
        log.warning("python corpus: could not cache it at %s (%s); set UNIDISTILL_CACHE to a writable folder",
                    path, e.strerror or e)
    return docs


def statistics(docs: list[dict]) -> dict:
    out = {}
    for split in ("train", "held_out"):
        part = [d for d in docs if d["split"] == split]
        out[split] = {"documents": len(part), "characters": sum(len(d["text"]) for d in part),
                      "pydoc_topics": sum(d["id"].startswith("pydoc:") for d in part)}
    out["sha256"] = hashlib.sha256("".join(d["id"] + d["text"] for d in docs).encode()).hexdigest()
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="build and cache the offline 'python' text corpus")
    ap.add_argument("--rebuild", action="store_true", help="rebuild even if the cache exists")
    args = ap.parse_args(argv)
    docs = load_python_corpus(rebuild=args.rebuild)
    print(json.dumps({"cache": str(cache_path()), **statistics(docs)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
