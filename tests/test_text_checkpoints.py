"""Loading and saving text checkpoints: MDLM folders and transformers masked LMs behind one interface."""
import json

import pytest
import torch
from torch import nn

from unidistill.engine.config import ConfigError
from unidistill.modalities.text.masked_lm import HFMaskedLM, block_list, hidden_states, load_masked_lm, save_masked_lm
from unidistill.modalities.text.mdlm import MDLMConfig, MDLMModel
from unidistill.modalities.text.tokenizer import train_tokenizer

TEXTS = ["def add(a, b):\n    return a + b\n", "The quick brown fox jumps over the lazy dog.",
         "import torch\nx = torch.zeros(3)\n", "Masked diffusion models denoise tokens in any order."] * 4
L = 12


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, vocab_size=300)


def ids_with_masks(tok, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(2, len(tok), (2, L), generator=g)
    x[x == tok.mask_token_id] = 2
    masked = torch.rand(2, L, generator=g) < 0.5
    masked[:, 0], masked[:, 1] = True, False
    return x.masked_fill(masked, tok.mask_token_id), masked


def tiny_bert(vocab, mask_token_id=None):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=vocab, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=32, pad_token_id=0)
    if mask_token_id is not None:
        cfg.mask_token_id = mask_token_id
    return BertForMaskedLM(cfg).eval()


def tiny_mdlm(tok, **kw):
    torch.manual_seed(0)
    cfg = MDLMConfig(**{"vocab_size": len(tok), "mask_token_id": tok.mask_token_id, "max_position_embeddings": L,
                        "hidden_size": 32, "num_layers": 1, "num_heads": 2, **kw})
    model = MDLMModel(cfg).eval()
    with torch.no_grad():  # adaLN-Zero starts with a zero head: randomise so outputs differ per input
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def save_raw(model, tok, folder):
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_mdlm_round_trip_and_auto_model(tok, tmp_path, one_thread):
    from transformers import AutoModel

    model = tiny_mdlm(tok, time_conditioning=True)
    folder = save_masked_lm(model, tok, tmp_path / "mdlm")
    assert not (tmp_path / "mdlm.tmp").exists()
    loaded, tok2 = load_masked_lm(folder)
    assert isinstance(loaded, MDLMModel) and len(tok2) == len(tok) and tok2.mask_token_id == tok.mask_token_id
    x, _ = ids_with_masks(tok)
    t = torch.tensor([0.3, 0.8])
    with torch.no_grad():
        ref = model(x, t)
        assert torch.equal(loaded(x, t), ref)
        auto = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
        assert isinstance(auto, MDLMModel)
        assert torch.equal(auto(x, t), ref)
        h = hidden_states(loaded, x, t)
    assert h.shape == (2, L, 32)
    assert block_list(loaded) is loaded.backbone.blocks and len(block_list(loaded)) == 1


def test_bert_loads_with_subs_interface(tok, tmp_path, one_thread):
    folder = save_raw(tiny_bert(len(tok)), tok, tmp_path / "bert")
    model, tok2 = load_masked_lm(folder)
    assert isinstance(model, HFMaskedLM) and model.mask_id == tok.mask_token_id
    assert model.length == 32 and model.vocab_size == len(tok) and model.time_conditioned is False
    x, masked = ids_with_masks(tok)
    with torch.no_grad():
        logp = model(x)
        assert logp.dtype == torch.float32 and logp.shape == (2, L, len(tok))
        # unmasked: all mass on the input token
        carried = logp[~masked]
        assert torch.equal(carried.gather(-1, x[~masked][:, None]).squeeze(-1), torch.zeros(len(carried)))
        assert torch.all(carried.exp().sum(-1) == 1)
        # masked: no mass on the mask token, a distribution over the rest
        assert torch.all(logp[masked][:, tok.mask_token_id] == float("-inf"))
        assert torch.allclose(logp[masked].exp().sum(-1), torch.ones(int(masked.sum())), atol=1e-5)
        assert (logp[masked].exp().max(-1).values < 1).all()
        # soft one-hot inputs reproduce the id logits
        onehot = nn.functional.one_hot(x, len(tok)).float()
        assert torch.allclose(model.logits(probs=onehot), model.logits(x), atol=1e-5)
        h = hidden_states(model, x)
        assert h.shape == (2, L, 16)
        assert torch.allclose(hidden_states(model, probs=onehot), h, atol=1e-5)
    blocks = block_list(model)
    assert blocks is model.model.bert.encoder.layer and len(blocks) == 2


def test_bert_padded_vocab_is_sliced(tok, tmp_path, one_thread):
    folder = save_raw(tiny_bert(len(tok) + 37), tok, tmp_path / "padded")
    model, _ = load_masked_lm(folder)
    assert model.model.config.vocab_size == len(tok) + 37
    x, masked = ids_with_masks(tok, seed=1)
    with torch.no_grad():
        logp = model(x)
        full = model.model(input_ids=x).logits
        assert logp.shape == (2, L, len(tok)) and model.logits(x).shape == (2, L, len(tok))
        assert torch.allclose(model.logits(x), full[..., : len(tok)])
        assert torch.allclose(logp[masked].exp().sum(-1), torch.ones(int(masked.sum())), atol=1e-5)
        onehot = nn.functional.one_hot(x, len(tok)).float()
        assert torch.allclose(model.logits(probs=onehot), model.logits(x), atol=1e-5)


def test_save_masked_lm_round_trip_for_bert(tok, tmp_path, one_thread):
    src = save_raw(tiny_bert(len(tok)), tok, tmp_path / "src")
    model, tok2 = load_masked_lm(src)
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")  # an existing folder is replaced
    save_masked_lm(model, tok2, out)
    assert not (out / "stale.txt").exists() and not (tmp_path / "out.tmp").exists()
    again, tok3 = load_masked_lm(out)
    assert isinstance(again, HFMaskedLM) and len(tok3) == len(tok) and again.mask_id == model.mask_id
    x, _ = ids_with_masks(tok, seed=2)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


def test_mask_id_from_config_when_tokenizer_has_none(tok, tmp_path, one_thread):
    from transformers import PreTrainedTokenizerFast

    plain = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, eos_token=tok.eos_token)
    assert plain.mask_token_id is None
    folder = save_raw(tiny_bert(len(tok), mask_token_id=tok.mask_token_id), plain, tmp_path / "cfgmask")
    model, tok2 = load_masked_lm(folder)
    assert model.mask_id == tok.mask_token_id == tok2.mask_token_id


def test_missing_folder_and_files(tok, tmp_path):
    with pytest.raises(ConfigError, match=r"model folder .*nope does not exist"):
        load_masked_lm(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="has no config.json"):
        load_masked_lm(tmp_path / "empty")
    folder = tmp_path / "noweights"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ConfigError, match="has no weights file"):
        load_masked_lm(folder)


def test_vocab_smaller_than_tokenizer(tok, tmp_path, one_thread):
    folder = save_raw(tiny_bert(len(tok) - 10), tok, tmp_path / "small")
    msg = rf"small: the model's vocabulary \({len(tok) - 10}\) is smaller than the tokenizer's \({len(tok)}\)"
    with pytest.raises(ConfigError, match=msg):
        load_masked_lm(folder)


def test_tokenizer_without_mask_token(tok, tmp_path, one_thread):
    from transformers import PreTrainedTokenizerFast

    plain = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, eos_token=tok.eos_token)
    folder = save_raw(tiny_bert(len(tok)), plain, tmp_path / "nomask")
    with pytest.raises(ConfigError, match=r"nomask: the tokenizer has no mask token and config.mask_token_id \(None\)"):
        load_masked_lm(folder)


def test_mdlm_mask_id_mismatch(tok, tmp_path, one_thread):
    model = tiny_mdlm(tok, mask_token_id=tok.eos_token_id)
    assert tok.eos_token_id != tok.mask_token_id
    folder = save_raw(model, tok, tmp_path / "mismatch")
    with pytest.raises(ConfigError, match=rf"mask_token_id {tok.eos_token_id} differs from the tokenizer's "
                                          rf"mask token id {tok.mask_token_id}"):
        load_masked_lm(folder)


def test_unknown_architecture(tok, tmp_path, one_thread):
    from transformers import GPT2Config, GPT2Model

    folder = save_raw(GPT2Model(GPT2Config(vocab_size=len(tok), n_layer=1, n_embd=16, n_head=2)), tok,
                      tmp_path / "gpt2")
    with pytest.raises(ConfigError, match="GPT2Model has no language-model head"):
        load_masked_lm(folder)
