"""Text data offline: the pydoc corpus, local files through `datasets`, the byte-level tokenizer, packing,
the judge's perplexity and entropy, and one-line errors on bad text input."""
from __future__ import annotations

import json
import math

import pytest
import torch

from unidistill.engine.config import ConfigError
from unidistill.modalities.text.corpus import load_documents, pack, split_document, split_text
from unidistill.modalities.text.io import SHIPPED
from unidistill.modalities.text.judge import build_judge, generative_perplexity, token_nll, unigram_entropy
from unidistill.modalities.text.tokenizer import encode_checked, load_tokenizer, train_tokenizer

TEXTS = ["The quick brown fox jumps over the lazy dog.\n" * 3, "def f(x):\n    return x + 1\n" * 4]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, vocab_size=300)


def test_pydoc_corpus_is_offline_and_split_without_overlap() -> None:
    docs = load_documents("pydoc")
    assert len(docs) > 50 and sum(map(len, docs)) > 400_000
    train, held = split_text(docs, "train"), split_text(docs, "held_out")
    assert 0.05 < sum(map(len, held)) / sum(map(len, docs)) < 0.15
    a, b = split_document("line one\nline two\nline three\n", 0.4)
    assert a + b == "line one\nline two\nline three\n" and b.startswith("line")
    assert not set(held) & set(train)


def test_byte_level_tokenizer_encodes_any_character(tok, tmp_path) -> None:
    text = "naïve café ✓ 漢字 \u0000 emoji 🙂"
    ids = encode_checked(tok, [text], "test")[0]
    assert tok.decode(ids) == text
    tok.save_pretrained(tmp_path / "tok")
    again = load_tokenizer(tmp_path / "tok")
    assert again(text)["input_ids"] == tok(text)["input_ids"] and again.mask_token_id == tok.mask_token_id


def test_shipped_tokenizer_has_mask_and_eos() -> None:
    tok = load_tokenizer(SHIPPED["tokenizer"])
    assert len(tok) == 2048 and tok.mask_token_id is not None and tok.eos_token_id is not None


def test_unknown_characters_are_counted_and_refused(tmp_path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "[MASK]": 1, "<eos>": 2, "a": 3, "b": 4}
    inner = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    inner.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=inner, unk_token="[UNK]", mask_token="[MASK]", eos_token="<eos>")
    assert encode_checked(tok, ["a b a b " * 100 + "z"], "small") is not None  # 1 unknown in 401: logged, kept
    with pytest.raises(ConfigError, match=r"corpus x: 50\.00% of tokens are unknown"):
        encode_checked(tok, ["a z"], "corpus x")


def test_mask_token_inside_the_text_is_refused(tok) -> None:
    with pytest.raises(ConfigError, match="contains the mask token"):
        encode_checked(tok, ["hello [MASK] world"], "corpus y")


def test_local_files_load_through_datasets(tmp_path) -> None:
    txt = tmp_path / "c.txt"
    txt.write_text("first document\nwith two lines\n")
    assert load_documents(str(txt)) == ["first document\nwith two lines\n"]
    jl = tmp_path / "c.jsonl"
    jl.write_text("\n".join(json.dumps({"text": t}) for t in ["one", "", "two"]))
    assert load_documents(str(jl)) == ["one", "two"]  # the empty document is dropped (and logged)
    bad = tmp_path / "c.jsonl2"
    bad.write_text("x")
    with pytest.raises(ConfigError, match="suffix '.jsonl2'; allowed: .txt, .json, .jsonl"):
        load_documents(str(bad))
    nofield = tmp_path / "d.json"
    nofield.write_text(json.dumps([{"body": "x"}]))
    with pytest.raises(ConfigError, match="must hold records with a 'text' field"):
        load_documents(str(nofield))
    empty = tmp_path / "e.jsonl"
    empty.write_text(json.dumps({"text": "  "}))
    with pytest.raises(ConfigError, match="no non-empty documents"):
        load_documents(str(empty))
    with pytest.raises(ConfigError, match="neither 'python', 'pydoc' nor an existing"):
        load_documents(str(tmp_path / "missing.txt"))


def test_pack_separates_documents_with_eos_and_refuses_short_corpora() -> None:
    blocks = pack([[5, 6, 7], [8]], 3, eos_id=0)
    assert blocks.tolist() == [[5, 6, 7], [0, 8, 0]]
    with pytest.raises(ConfigError, match="has 3 tokens, fewer than one block of length 4"):
        pack([[5, 6]], 4, eos_id=0, where="corpus z")


def test_generative_perplexity_and_entropy_closed_forms() -> None:
    judge = build_judge({"n_embd": 16, "n_layer": 1, "n_head": 2}, vocab_size=50, length=6, eos_id=0)
    torch.nn.init.zeros_(judge.transformer.wte.weight)  # tied output: zero logits, the uniform judge
    x = torch.randint(1, 50, (5, 6))
    assert generative_perplexity(judge, x, 0) == pytest.approx(50.0, rel=1e-5)
    torch.manual_seed(0)
    judge2 = build_judge({"n_embd": 16, "n_layer": 1, "n_head": 2}, vocab_size=50, length=6, eos_id=0).eval()
    nll = token_nll(judge2, x, 0)
    assert generative_perplexity(judge2, x, 0) == pytest.approx(math.exp(float(nll.detach().mean())), rel=1e-5)
    assert unigram_entropy(torch.tensor([[1, 1, 2, 3]])) == pytest.approx(-(0.5 * math.log(0.5) + 0.5 * math.log(0.25)))
    assert unigram_entropy(torch.tensor([[4, 4, 4]])) == 0.0
    with pytest.raises(ValueError, match="judge's vocabulary is 0..49"):
        generative_perplexity(judge, torch.tensor([[1, 60]]), 0)


def test_learning_curve_pairs_each_evaluation_with_the_training_loss_since_the_last(tmp_path) -> None:
    from unidistill.modalities.text.teach import learning_curve

    (tmp_path / "eval.csv").write_text("step,held_out_nelbo,train_nelbo\n2,5.0,4.0\n4,4.5,3.0\n")
    rows = [{"step": str(s), "loss/generator": str(v)} for s, v in ((1, 9.0), (2, 7.0), (3, 5.0), (4, 3.0))]
    assert learning_curve(tmp_path / "eval.csv", rows) == [
        {"step": 2.0, "held_out_nelbo": 5.0, "train_nelbo": 4.0, "train_loss": 8.0},
        {"step": 4.0, "held_out_nelbo": 4.5, "train_nelbo": 3.0, "train_loss": 4.0}]
    assert learning_curve(tmp_path / "missing.csv", rows) == []
