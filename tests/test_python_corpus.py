"""The offline "python" corpus: the pydoc topics and the standard library's docstrings, cleaned,
de-duplicated, split by whole documents, reproducible and cached."""
from __future__ import annotations

import json

import pytest

from unidistill.modalities.text import python_corpus as pc
from unidistill.modalities.text.corpus import corpus_texts

FAKE = {
    "alpha.py": '"""Module alpha: the first module of the fake library."""\n\n'
                'class A:\n    """A class whose docstring is long enough to be kept.\n\n\n\n'
                '    Second paragraph.   """\n'
                '    def f(self):\n        """Short."""\n',
    "beta.py": 'def g():\n    """A class whose docstring is long enough to be kept.\n\n    Second paragraph."""\n'
               'def h():\n    """Another function with its own documentation string."""\n',
    "test/test_x.py": '"""A test module that must never be read by the builder."""\n',
    "pkg/test_y.py": '"""A test file outside a test folder, also excluded."""\n',
    "broken.py": 'def (:\n',
}


@pytest.fixture()
def fake_stdlib(tmp_path):
    for name, text in FAKE.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_builder_cleans_deduplicates_and_excludes_tests(fake_stdlib) -> None:
    docs = pc.build_documents(fake_stdlib, topics={"t": "A topic of the documentation, long enough."})
    assert [d["id"] for d in docs] == ["pydoc:t", "stdlib:alpha.py", "stdlib:beta.py"]
    alpha, beta = docs[1]["text"], docs[2]["text"]
    # source order, cleandoc'd, trailing spaces and extra blank lines gone, "Short." (< MIN_CHARS) dropped
    assert alpha == ("Module alpha: the first module of the fake library.\n\n"
                     "A class whose docstring is long enough to be kept.\n\nSecond paragraph.")
    assert beta == "Another function with its own documentation string."  # the duplicate of A's docstring went
    assert all(d["split"] == ("held_out" if pc.held_out(d["id"]) else "train") for d in docs)


def test_split_is_by_whole_document_and_stable() -> None:
    ids = [f"stdlib:m{i}.py" for i in range(4000)]
    share = sum(map(pc.held_out, ids)) / len(ids)
    assert 0.08 < share < 0.12
    assert [pc.held_out(i) for i in ids[:50]] == [pc.held_out(i) for i in ids[:50]]


def test_python_corpus_is_built_once_cached_and_reproducible(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("UNIDISTILL_CACHE", str(tmp_path))
    docs = pc.load_python_corpus()
    path = pc.cache_path()
    assert path.is_file() and path.is_relative_to(tmp_path)
    stats = pc.statistics(docs)
    total = stats["train"]["characters"] + stats["held_out"]["characters"]
    assert total > 1_500_000 and stats["train"]["pydoc_topics"] + stats["held_out"]["pydoc_topics"] > 50
    assert 0.03 < stats["held_out"]["characters"] / total < 0.2
    assert len({d["id"] for d in docs}) == len(docs)
    assert pc.statistics(pc.build_documents()) == stats  # deterministic
    path.write_text(json.dumps(docs[0]) + "\n")  # a cache that exists is read, not rebuilt
    assert pc.load_python_corpus() == docs[:1]
    path.write_text("not json\n")  # an unreadable one is rebuilt
    assert pc.statistics(pc.load_python_corpus()) == stats
    train, held = corpus_texts("python", "train"), corpus_texts("python", "held_out")
    assert len(train) == stats["train"]["documents"] and not set(train) & set(held)


def test_an_unwritable_cache_only_costs_a_rebuild(tmp_path, monkeypatch, caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where the cache folder should be
    monkeypatch.setenv("UNIDISTILL_CACHE", str(blocker))
    monkeypatch.setattr(pc, "build_documents", lambda: [{"id": "pydoc:x", "text": "t" * 40, "split": "train"}])
    assert pc.load_python_corpus() == [{"id": "pydoc:x", "text": "t" * 40, "split": "train"}]
    assert "could not cache it" in caplog.text
