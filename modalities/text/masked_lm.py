"""Masked language models from local transformers folders behind one interface: our MDLM
(`MDLMModel`) or any transformers masked LM (BERT, RoBERTa, ModernBERT, or a bidirectional
LLaDA-style model returning `.logits`) wrapped by `HFMaskedLM`. Both expose `mask_id`, `length`,
`time_conditioned`, `forward(input_ids, t)` -> SUBS log-probabilities (B, L, V) and
`logits(input_ids, t, probs)`; `hidden_states` and `block_list` reach their hidden states and blocks.
Importing this module registers MDLM with the transformers Auto classes."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from torch import Tensor, nn
from transformers import AutoConfig, AutoModel, PreTrainedModel

from unidistill.engine.config import ConfigError
from unidistill.modalities.shared.folders import WeightsError, load_weights

from .mdlm import MDLMConfig, MDLMModel, subs
from .tokenizer import check_tokenizer, quiet_transformers

try:
    AutoConfig.register(MDLMConfig.model_type, MDLMConfig, exist_ok=True)
    AutoModel.register(MDLMConfig, MDLMModel, exist_ok=True)
except ValueError:  # registered already (older transformers without a working exist_ok)
    pass

WEIGHT_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin", "pytorch_model.bin.index.json")
# position embeddings of these models start after the padding index: usable length = max positions - (pad + 1)
OFFSET_POSITIONS = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text", "longformer"}


def _model_length(config) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        n = getattr(config, key, None)
        if isinstance(n, int) and n > 0:
            if key == "max_position_embeddings" and getattr(config, "model_type", None) in OFFSET_POSITIONS:
                n -= (getattr(config, "pad_token_id", None) or 0) + 1
            return n
    return None


class HFMaskedLM(nn.Module):
    """A transformers masked LM with MDLMModel's interface. `vocab_size` (the tokenizer's) may be
    smaller than the model's padded vocabulary: logits are sliced to it. `t` is ignored."""

    time_conditioned = False

    def __init__(self, model: PreTrainedModel, mask_id: int, vocab_size: int | None = None,
                 length: int | None = None):
        super().__init__()
        self.model = model
        model_vocab = model.get_input_embeddings().weight.shape[0]
        self.vocab_size = int(vocab_size if vocab_size is not None else model_vocab)
        if self.vocab_size > model_vocab:
            raise ValueError(f"vocab_size {self.vocab_size} exceeds the model's vocabulary {model_vocab}")
        if not 0 <= mask_id < self.vocab_size:
            raise ValueError(f"mask_id {mask_id} is outside the vocabulary [0, {self.vocab_size})")
        self._mask_id = int(mask_id)
        length = length if length is not None else _model_length(model.config)
        if length is None:
            raise ValueError(f"{type(model).__name__}: the config names no maximum length; pass length")
        self._length = int(length)

    @property
    def mask_id(self) -> int:
        return self._mask_id

    @property
    def length(self) -> int:
        return self._length

    @property
    def config(self):
        return self.model.config

    @property
    def device(self):
        return self.model.get_input_embeddings().weight.device

    def _inputs(self, input_ids: Tensor | None, probs: Tensor | None) -> dict:
        if (input_ids is None) == (probs is None):
            raise ValueError("pass exactly one of input_ids (B, L) and probs (B, L, V)")
        if input_ids is not None:
            return {"input_ids": input_ids}
        table = self.model.get_input_embeddings().weight
        if probs.shape[-1] == self.vocab_size:
            table = table[: self.vocab_size]
        elif probs.shape[-1] != table.shape[0]:
            raise ValueError(f"probs have {probs.shape[-1]} classes; expected {self.vocab_size} or {table.shape[0]}")
        return {"inputs_embeds": probs.to(table.dtype) @ table}

    def logits(self, input_ids: Tensor | None = None, t: Tensor | None = None, probs: Tensor | None = None) -> Tensor:
        """Raw logits (B, L, vocab_size); soft inputs `probs` (B, L, V) become probs @ embedding matrix."""
        out = self.model(**self._inputs(input_ids, probs))
        return out.logits[..., : self.vocab_size]

    def hidden(self, input_ids: Tensor | None = None, t: Tensor | None = None, probs: Tensor | None = None) -> Tensor:
        """The last hidden state (B, L, H)."""
        out = self.model(**self._inputs(input_ids, probs), output_hidden_states=True)
        return out.hidden_states[-1]

    def forward(self, input_ids: Tensor, t: Tensor | None = None) -> Tensor:
        """SUBS log-probabilities of x0 (B, L, vocab_size), float32, given z_t = input_ids (B, L)."""
        return subs(self.logits(input_ids), input_ids, self._mask_id)


def hidden_states(model, input_ids: Tensor | None = None, t: Tensor | None = None,
                  probs: Tensor | None = None) -> Tensor:
    """Last hidden states (B, L, H) of an MDLMModel or HFMaskedLM (ids or soft inputs)."""
    if isinstance(model, MDLMModel):
        return model.backbone(input_ids, t, probs)[0]
    if isinstance(model, HFMaskedLM):
        return model.hidden(input_ids, t, probs)
    raise TypeError(f"hidden_states: expected MDLMModel or HFMaskedLM, got {type(model).__name__}")


def block_list(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks: MDLM's backbone.blocks, else the longest ModuleList of one class."""
    if isinstance(model, MDLMModel):
        return model.backbone.blocks
    best = None
    for m in model.modules():
        if isinstance(m, nn.ModuleList) and len(m) and len({type(b) for b in m}) == 1:
            if best is None or len(m) > len(best):
                best = m
    if best is None:
        raise ValueError(f"{type(model).__name__} has no list of identical transformer blocks")
    return best


def without_dropout(model: nn.Module) -> nn.Module:
    """The model with every dropout layer's rate set to 0 (in place): a distilled student or a discriminator
    built from a teacher trained with dropout must be the same function in training and sampling mode,
    or the policy gradient's log-probabilities would belong to a different policy than the sampler's."""
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.p = 0.0
    return model


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def _load_tokenizer(folder: Path, tokenizer):
    if tokenizer is not None and not isinstance(tokenizer, (str, Path)):
        return tokenizer
    from transformers import AutoTokenizer

    src = Path(tokenizer) if tokenizer is not None else folder
    if not src.is_dir():
        raise ConfigError(f"tokenizer folder {src} does not exist")
    try:
        return AutoTokenizer.from_pretrained(str(src), local_files_only=True)
    except (ValueError, KeyError, OSError, TypeError) as e:
        raise ConfigError(f"model folder {folder}: cannot load a tokenizer from {src} ({_first_line(e)}); "
                          "save one with the model or pass a tokenizer") from None


def _load_hf(folder: Path):
    from transformers import AutoModelForMaskedLM

    kw = {"trust_remote_code": False}  # load_weights: safetensors and local files only, never unpickled
    try:
        return load_weights(AutoModelForMaskedLM, folder, **kw)
    except WeightsError as e:
        raise ConfigError(f"model folder {e}") from None
    except (ValueError, KeyError):  # not a masked-LM architecture: try the bare auto class below
        pass
    except (OSError, RuntimeError) as e:
        raise ConfigError(f"model folder {folder}: cannot load the masked LM ({_first_line(e)})") from None
    try:
        model = load_weights(AutoModel, folder, **kw)
    except (ValueError, KeyError, OSError, RuntimeError) as e:
        raise ConfigError(f"model folder {folder}: cannot load the architecture ({_first_line(e)}); "
                          "allowed are transformers masked LMs (AutoModelForMaskedLM) and MDLM folders") from None
    if model.get_output_embeddings() is None:
        raise ConfigError(f"model folder {folder}: {type(model).__name__} has no language-model head; "
                          "allowed are masked LMs returning logits")
    return model


def load_masked_lm(folder: str | Path, tokenizer=None):
    """(model, tokenizer) from a local folder with config.json and weights: MDLMModel for
    model_type "unidistill_mdlm", else a transformers masked LM wrapped in HFMaskedLM. The tokenizer
    is read from the folder unless given (object or folder path). Problems raise ConfigError."""
    quiet_transformers()
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"model folder {folder} does not exist")
    if not (folder / "config.json").is_file():
        raise ConfigError(f"model folder {folder} has no config.json; save the model with save_pretrained")
    if not any(any(folder.glob(p)) for p in WEIGHT_PATTERNS):
        raise ConfigError(f"model folder {folder} has no weights file (model.safetensors or pytorch_model.bin)")
    try:
        model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    except (ValueError, AttributeError) as e:
        raise ConfigError(f"model folder {folder}: config.json is not a JSON object ({_first_line(e)})") from None
    tok = _load_tokenizer(folder, tokenizer)

    if model_type == MDLMConfig.model_type:
        if tok.mask_token_id is None:
            raise ConfigError(f"model folder {folder}: the tokenizer has no mask token; masked diffusion needs one")
        check_tokenizer(tok, str(folder))
        try:
            model = load_weights(MDLMModel, folder).float()  # safetensors only; may be stored in fp16
        except (ValueError, KeyError, OSError, RuntimeError) as e:
            raise ConfigError(f"model folder {folder}: cannot load the MDLM ({_first_line(e)})") from None
        if model.config.vocab_size < len(tok):
            raise ConfigError(f"model folder {folder}: the model's vocabulary ({model.config.vocab_size}) is smaller "
                              f"than the tokenizer's ({len(tok)}); use the tokenizer the model was trained with")
        if model.mask_id != tok.mask_token_id:
            raise ConfigError(f"model folder {folder}: config mask_token_id {model.mask_id} differs from the "
                              f"tokenizer's mask token id {tok.mask_token_id}; they must be equal")
        return model.eval(), tok

    model = _load_hf(folder)
    if tok.mask_token_id is None:
        mid = getattr(model.config, "mask_token_id", None)
        if not isinstance(mid, int) or not 0 <= mid < len(tok):
            raise ConfigError(f"model folder {folder}: the tokenizer has no mask token and config.mask_token_id "
                              f"({mid}) is not a token of its vocabulary; masked diffusion needs a mask token")
        tok.mask_token = tok.convert_ids_to_tokens(mid)
    check_tokenizer(tok, str(folder))
    model_vocab = model.get_input_embeddings().weight.shape[0]
    if model_vocab < len(tok):
        raise ConfigError(f"model folder {folder}: the model's vocabulary ({model_vocab}) is smaller than the "
                          f"tokenizer's ({len(tok)}); use the tokenizer the model was trained with")
    try:
        wrapped = HFMaskedLM(model, tok.mask_token_id, vocab_size=len(tok))
    except ValueError as e:
        raise ConfigError(f"model folder {folder}: {_first_line(e)}") from None
    return wrapped.eval(), tok


def save_masked_lm(model, tokenizer, folder: str | Path) -> Path:
    """save_pretrained of a transformers model (an HFMaskedLM is unwrapped; the judge works too) and the
    tokenizer into `folder`, written to folder + ".tmp" first and renamed over any existing folder."""
    quiet_transformers()
    folder = Path(folder)
    net = model.model if isinstance(model, HFMaskedLM) else model
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    net.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    if folder.exists():
        shutil.rmtree(folder)
    tmp.replace(folder)
    return folder
