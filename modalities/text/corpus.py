"""Text corpora, offline: the English documentation that ships with every CPython
(`pydoc_data.topics`, about 465k characters) or local .txt/.json/.jsonl files read with `datasets`;
split into train and held-out text, tokenised and packed into fixed-length blocks (MDLM "wrap")."""
from __future__ import annotations

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
    """Documents from a local .txt (one document per file), .json or .jsonl file (a "text" field per record)."""
    import datasets

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config key corpus: {str(path)!r} is neither 'pydoc' nor an existing .txt/.json/.jsonl file")
    suffix = path.suffix.lower()
    datasets.disable_progress_bars()
    try:
        if suffix == ".txt":
            ds = datasets.load_dataset("text", data_files=str(path), sample_by="document", split="train")
        elif suffix in (".json", ".jsonl"):
            ds = datasets.load_dataset("json", data_files=str(path), split="train")
        else:
            raise ConfigError(f"config key corpus: {path} has suffix {suffix!r}; allowed: .txt, .json, .jsonl")
    except ConfigError:
        raise
    except Exception as e:  # datasets raises many types for a malformed file
        raise ConfigError(f"config key corpus: {path} could not be read: {str(e).splitlines()[0]}") from None
    if "text" not in ds.column_names:
        raise ConfigError(f"config key corpus: {path} has columns {ds.column_names}; it needs a 'text' column")
    return [str(t) if t is not None else "" for t in ds["text"]]


def load_documents(corpus: str) -> list[str]:
    """Non-empty documents of `corpus` ("pydoc" or a file); empty ones are dropped with a log line."""
    docs = pydoc_documents() if corpus == "pydoc" else file_documents(corpus)
    kept = [d for d in docs if d.strip()]
    if len(kept) < len(docs):
        log.warning("corpus %s: dropped %d empty documents of %d", corpus, len(docs) - len(kept), len(docs))
    if not kept:
        raise ConfigError(f"config key corpus: {corpus} has no non-empty documents")
    return kept


def split_document(doc: str, held_out: float = HELD_OUT_FRACTION) -> tuple[str, str]:
    """(train, held_out) parts of one document: cut at the first line break after (1 - held_out) of it."""
    cut = int(len(doc) * (1 - held_out))
    nl = doc.find("\n", cut)
    cut = len(doc) if nl < 0 else nl + 1
    return doc[:cut], doc[cut:]


def split_text(docs: list[str], split: str) -> list[str]:
    if split not in SPLITS:
        raise ValueError(f"split {split!r}; choose one of: {', '.join(SPLITS)}")
    parts = [split_document(d)[SPLITS.index(split)] for d in docs]
    return [p for p in parts if p.strip()]


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

    texts = split_text(load_documents(corpus), split)
    return pack(encode_checked(tokenizer, texts, corpus), length, tokenizer.eos_token_id, f"corpus {corpus} ({split})")
