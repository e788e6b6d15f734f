"""A byte-level BPE tokenizer trained offline with `tokenizers` and wrapped as a transformers
`PreTrainedTokenizerFast` (save_pretrained / from_pretrained); byte-level, so every character encodes."""
from __future__ import annotations

import logging
from pathlib import Path

from unidistill.engine.config import ConfigError

log = logging.getLogger(__name__)
EOS, MASK = "<|endoftext|>", "[MASK]"
MAX_UNKNOWN_FRACTION = 0.01  # a tokenizer with an unk token may map at most this share of tokens to it


def quiet_transformers() -> None:
    """No per-file progress bars from transformers when loading or saving small local folders: they would
    bury the one-line errors and the training progress bar."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def train_tokenizer(texts: list[str], vocab_size: int = 2048):
    """Byte-level BPE with an end-of-text token (also BOS and padding) and a mask token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 260:
        raise ConfigError(f"vocab_size = {vocab_size}; byte-level BPE needs at least 256 bytes + specials (>= 260)")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, MASK], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=EOS,
                                   mask_token=MASK)


def load_tokenizer(path: str | Path):
    """A transformers tokenizer from a local folder; it must have a mask token and an EOS (or SEP) token."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"tokenizer folder {path} does not exist")
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    check_tokenizer(tok, str(path))
    return tok


def check_tokenizer(tok, where: str) -> None:
    if tok.mask_token_id is None:
        raise ConfigError(f"tokenizer {where} has no mask token; masked diffusion needs one (set mask_token)")
    if tok.eos_token_id is None and getattr(tok, "sep_token_id", None) is None:
        raise ConfigError(f"tokenizer {where} has neither an EOS nor a SEP token to separate documents")
    if tok.eos_token_id is None:
        tok.eos_token = tok.sep_token


def encode_checked(tok, texts: list[str], where: str) -> list[list[int]]:
    """Token ids of each text without special tokens. Characters a tokenizer cannot encode become its
    unk token; their share is logged and above MAX_UNKNOWN_FRACTION it is an error naming the corpus."""
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    unk = tok.unk_token_id
    if unk is not None:
        n_unk = sum(row.count(unk) for row in ids)
        total = max(1, sum(len(row) for row in ids))
        if n_unk:
            log.warning("%s: %d of %d tokens (%.3f%%) are the unknown token", where, n_unk, total, 100 * n_unk / total)
        if n_unk / total > MAX_UNKNOWN_FRACTION:
            raise ConfigError(f"{where}: {100 * n_unk / total:.2f}% of tokens are unknown to the tokenizer "
                              f"(at most {100 * MAX_UNKNOWN_FRACTION:.0f}% allowed); use a byte-level tokenizer")
    if tok.mask_token_id is not None and any(tok.mask_token_id in row for row in ids):
        raise ConfigError(f"{where}: the text contains the mask token {tok.mask_token!r} itself")
    return ids


def main(argv: list[str] | None = None) -> int:
    """python -m unidistill.modalities.text.tokenizer --out DIR [--corpus python] [--vocab-size 2048]"""
    import argparse

    from .corpus import corpus_texts

    ap = argparse.ArgumentParser(description="train a byte-level BPE tokenizer on a corpus's train split")
    ap.add_argument("--out", required=True)
    ap.add_argument("--corpus", default="python")
    ap.add_argument("--vocab-size", type=int, default=2048)
    args = ap.parse_args(argv)
    tok = train_tokenizer(corpus_texts(args.corpus, "train"), args.vocab_size)
    tok.save_pretrained(args.out)
    print(f"tokenizer with {len(tok)} tokens written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
