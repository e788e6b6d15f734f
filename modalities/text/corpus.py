"""Text corpora, offline: "python" (the CPython documentation topics together with the standard library's
docstrings, about 2M characters, built by `python_corpus.py` and cached), "pydoc" (the topics alone, about 465k
characters) or local .txt/.json/.jsonl/.parquet files; split into train and held-out text, tokenised and packed
into fixed-length blocks (MDLM "wrap")."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from unidistill.engine.config import ConfigError

log = logging.getLogger(__name__)
HELD_OUT_FRACTION = 0.1  # the last ~10% of every document (cut at a line break) is held out
SPLITS = ("train", "held_out")


def pydoc_documents() -> list[str]:
    """The CPython documentation topics, one document per topic, in sorted-key order."""
    from pydoc_data.topics import topics

    return [topics[k] for k in sorted(topics)]


def file_documents(path: str | Path) -> list[str]:
    """Documents from a local file: .txt (the whole file is one document), .jsonl (one JSON record per line),
    .json (a list of records, or {"text": [...]}) or .parquet (read with `datasets`); records need a "text"
    field. Malformed files fail naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config key corpus: {str(path)!r} is neither 'python', 'pydoc' nor an existing "
                          ".txt/.json/.jsonl/.parquet file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".txt":
            return [path.read_text()]
        if suffix == ".jsonl":
            records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        elif suffix == ".json":
            data = json.loads(path.read_text())
            records = [{"text": t} for t in data["text"]] if isinstance(data, dict) and "text" in data else data
        elif suffix == ".parquet":
            import datasets

            datasets.disable_progress_bars()
            datasets.utils.logging.set_verbosity_error()
            records = list(datasets.load_dataset("parquet", data_files=str(path), split="train"))
        else:
            raise ConfigError(f"config key corpus: {path} has suffix {suffix!r}; allowed: .txt, .json, .jsonl, "
                              ".parquet")
    except json.JSONDecodeError as e:
        raise ConfigError(f"config key corpus: {path} is not valid JSON (line {e.lineno}: {e.msg})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config key corpus: {path} is not UTF-8 text") from None
    except ConfigError:
        raise
    except Exception as e:  # a malformed parquet file: datasets raises many types
        raise ConfigError(f"config key corpus: {path} could not be read: {str(e).splitlines()[0]}") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) and "text" in r for r in records):
        raise ConfigError(f"config key corpus: {path} must hold records with a 'text' field")
    return [str(r["text"]) if r["text"] is not None else "" for r in records]


def load_documents(corpus: str) -> list[str]:
    """Non-empty documents of `corpus` ("python", "pydoc" or a file); empty ones are dropped with a log line."""
    if corpus == "python":
        from .python_corpus import load_python_corpus

        return [d["text"] for d in load_python_corpus()]
    docs = pydoc_documents() if corpus == "pydoc" else file_documents(corpus)
    kept = [d for d in docs if d.strip()]
    if not kept:
        raise ConfigError(f"config key corpus: {corpus} has no non-empty documents")
    if len(kept) < len(docs):
        log.warning("corpus %s: dropped %d empty documents of %d", corpus, len(docs) - len(kept), len(docs))
    return kept


def split_document(doc: str, held_out: float = HELD_OUT_FRACTION) -> tuple[str, str]:
    """(train, held_out) parts of one document: cut at the first line break after (1 - held_out) of it."""
    cut = int(len(doc) * (1 - held_out))
    nl = doc.find("\n", cut)
    cut = len(doc) if nl < 0 else nl + 1
    return doc[:cut], doc[cut:]


def split_text(docs: list[str], split: str) -> list[str]:
    """One split of documents cut at their last ~10% (the "pydoc" corpus and local files)."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r}; choose one of: {', '.join(SPLITS)}")
    parts = [split_document(d)[SPLITS.index(split)] for d in docs]
    return [p for p in parts if p.strip()]


def corpus_texts(corpus: str, split: str) -> list[str]:
    """The texts of one split: whole documents for "python" (each document is in exactly one split), the
    last ~10% of every document held out otherwise."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r}; choose one of: {', '.join(SPLITS)}")
    if corpus == "python":
        from .python_corpus import load_python_corpus

        return [d["text"] for d in load_python_corpus() if d["split"] == split]
    return split_text(load_documents(corpus), split)


def pack(token_lists: list[list[int]], length: int, eos_id: int, where: str = "corpus") -> torch.Tensor:
    """Concatenate documents separated by EOS and cut into (N, length) blocks; the tail is dropped."""
    if length < 2:
        raise ConfigError(f"config key length must be >= 2, got {length}")
    flat: list[int] = []
    for ids in token_lists:
        flat.extend(ids)
        flat.append(eos_id)
    n = len(flat) // length
    if n == 0:
        raise ConfigError(f"{where} has {len(flat)} tokens, fewer than one block of length {length}")
    return torch.tensor(flat[: n * length], dtype=torch.long).view(n, length)


def corpus_blocks(corpus: str, tokenizer, length: int, split: str) -> torch.Tensor:
    """Token blocks (N, length) of one split of a corpus under a tokenizer (see tokenizer.encode_checked)."""
    from .tokenizer import encode_checked

    texts = corpus_texts(corpus, split)
    return pack(encode_checked(tokenizer, texts, corpus), length, tokenizer.eos_token_id, f"corpus {corpus} ({split})")
