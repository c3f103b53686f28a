"""Semantic dedup with the real MiniLM embeddings (the default method): paraphrases are
found, same-topic requests for other things are not, and the HNSW search agrees with the
exact all-pairs cosine on which pairs pass the threshold."""

import numpy as np
import pytest

from corekit.embeddings import embed
from datakit.ops.dedup import SEMANTIC_THRESHOLD, semantic_pairs

TEXTS = [
    "Explain how tides work to a ten year old.",
    "Describe, for a ten-year-old child, how tides work.",  # paraphrase of 0
    "Write a short poem about tides.",  # same topic, other task
    "Summarise the history of the printing press in one paragraph.",
    "In a single paragraph, give a summary of the history of the printing press.",  # of 3
    "List three surprising facts about volcanoes.",
]


@pytest.mark.numeric
def test_paraphrases_found_and_hard_negatives_kept():
    pairs = {(i, j) for i, j, _ in semantic_pairs(TEXTS, SEMANTIC_THRESHOLD)}
    assert pairs == {(0, 1), (3, 4)}


@pytest.mark.numeric
def test_index_search_matches_exact_cosine():
    rng = np.random.default_rng(0)
    words = "tides poem bread chess river winter garden music history science".split()
    texts = [" ".join(rng.choice(words, 6)) + f" {i % 40}" for i in range(300)]
    got = {(i, j) for i, j, _ in semantic_pairs(texts, 0.9)}
    vecs = embed(texts)
    sims = vecs @ vecs.T
    want = {(i, j) for i in range(300) for j in range(i + 1, 300) if sims[i, j] >= 0.9}
    # HNSW with 16 neighbours: every exact pair is found unless a text has more than 15
    # neighbours above the threshold. Nothing below it is reported: the index stores float32,
    # so its cosine is the same dot product up to the rounding of a 384-term sum.
    assert len(got & want) >= 0.98 * len(want) and got <= want | {
        p for p in got if abs(sims[p] - 0.9) < 1e-6
    }


@pytest.mark.numeric
def test_each_reported_similarity_is_the_pairs_own_float32_cosine():
    """The score of a pair is recomputed from its two vectors in float32, so a pair's
    similarity does not depend on how the index found it (or on its storage type)."""
    pairs = semantic_pairs(TEXTS, 0.5)
    vecs = embed(TEXTS).astype(np.float32)
    assert pairs
    for i, j, sim in pairs:
        assert sim == round(float(np.dot(vecs[i], vecs[j])), 4) >= 0.5


@pytest.mark.numeric
def test_a_record_with_many_close_matches_loses_none():
    """Before: each record kept 16 neighbours, so in a group of 40 near-identical texts
    most pairs were never seen. The search now widens for a record whose list is full."""
    texts = [f"Explain how tides work to a ten year old, version {i}." for i in range(40)]
    texts += [f"Write a poem about owls, number {i}." for i in range(5)]
    got = {(i, j) for i, j, _ in semantic_pairs(texts, SEMANTIC_THRESHOLD)}
    vecs = embed(texts)
    sims = vecs @ vecs.T
    want = {(i, j) for i in range(45) for j in range(i + 1, 45) if sims[i, j] >= SEMANTIC_THRESHOLD}
    assert len(want) > 16 * 40 // 2  # more pairs than 16 neighbours a record could give
    assert got == want or got >= {p for p in want if abs(sims[p] - SEMANTIC_THRESHOLD) > 1e-4}


def test_the_search_widens_when_exactly_one_record_needs_it():
    """Before: when a single record's list was full, usearch answered its one-row search
    with a flat Matches (no ``counts``) and the dedup step died with AttributeError. Here a
    centre vector has three satellites at cosine 0.9 that are 0.715 from each other, so with
    3 neighbours only the centre's list is full above the 0.8 floor."""
    from usearch.index import Index

    from datakit.ops.dedup_search import neighbour_pairs

    vecs = [[1.0, 0.0, 0.0]]
    for angle in (0.0, 2 * np.pi / 3, 4 * np.pi / 3):
        side = np.sqrt(1 - 0.9**2)
        vecs.append([0.9, side * np.cos(angle), side * np.sin(angle)])
    vecs = np.asarray(vecs, dtype=np.float32)
    index = Index(ndim=3, metric="cos", dtype="f32")
    index.add(np.arange(4), vecs)
    pairs = {(min(i, j), max(i, j)) for i, j in neighbour_pairs(index, vecs, 0.8, 3)}
    assert pairs == {(0, 1), (0, 2), (0, 3)}


# ------------------------------------------------------------ the embedding fast path

VARIED = [
    "Hi.",
    "Write a haiku about the sea.",
    "Explain, step by step, how a bicycle's gears let a rider climb a steep hill without "
    "tiring, and what happens to the chain when the rider shifts under load. " * 3,
    "def add(a, b):\n    return a + b  # what does this function return for strings?",
    "Résumé les causes de la Révolution française en trois phrases.",
    "List five fruits: apple, pear, plum, fig, kiwi.",
    *TEXTS,
]


@pytest.mark.numeric
def test_the_int8_onnx_path_is_the_default_and_agrees_with_fp32():
    from corekit.embeddings import backend_for, default_embedding_model

    assert backend_for(default_embedding_model()) == "onnx-int8"
    fast = embed(VARIED)
    plain = embed(VARIED, backend="torch")
    assert fast.shape == plain.shape == (len(VARIED), 384)
    cos = (fast * plain).sum(axis=1)
    assert cos.mean() >= 0.99 and cos.min() >= 0.97
    # unit vectors, up to the float32 rounding of the normalisation
    assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    # order does not change a text's vector (batches are re-sorted by length): the same
    # batch through the same kernels, up to float32 rounding
    again = embed(list(reversed(VARIED)))[::-1]
    assert np.allclose(again, fast, atol=1e-4)


def test_the_dedup_step_records_which_embedding_backend_it_used():
    from datakit.ops import OpContext
    from datakit.ops.dedup import run

    ctx = OpContext()
    recs = [
        {"id": str(i), "instruction": t, "input": "", "output": ""} for i, t in enumerate(TEXTS)
    ]
    kept = run([recs], ctx, fields="instruction")
    assert ctx.stats["embedding_backend"] == "onnx-int8"
    assert len(kept) == len(TEXTS) - 2  # the two paraphrases


def test_the_onnx_build_is_cached_by_model_fingerprint():
    from corekit.embeddings import default_embedding_model
    from corekit.models import cache_dir, fingerprint

    embed(["warm"])
    built = cache_dir() / "embeddings" / f"{fingerprint(default_embedding_model())}-int8"
    assert (built / "model.onnx").is_file()
    assert sorted(p.name for p in built.iterdir()) == ["model.onnx", "source.json"]


def test_models_the_fast_path_cannot_reproduce_keep_the_plain_backend(tmp_path, monkeypatch):
    import json

    import pytest

    from corekit.embeddings import backend_for
    from corekit.errors import ToolkitError

    cls = tmp_path / "cls-model"
    (cls / "1_Pooling").mkdir(parents=True)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]  # fmt: skip
    (cls / "modules.json").write_text(json.dumps(modules))
    (cls / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    assert backend_for(str(cls)) == "torch"  # CLS pooling: not what the fast path computes
    (cls / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    assert backend_for(str(cls)) == "onnx-int8"
    (cls / "modules.json").write_text(json.dumps([*modules, {"type": "x.Dense", "path": "3"}]))
    assert backend_for(str(cls)) == "torch"  # an extra Dense layer
    monkeypatch.setenv("DATAKIT_EMBED_BACKEND", "torch")
    from corekit.embeddings import default_embedding_model

    assert backend_for(default_embedding_model()) == "torch"
    monkeypatch.setenv("DATAKIT_EMBED_BACKEND", "tensorrt")
    with pytest.raises(ToolkitError, match="DATAKIT_EMBED_BACKEND=tensorrt"):
        backend_for(None)


def test_static_embeddings_are_distilled_here_and_served_without_the_encoder():
    """The static backend: built once from the shipped MiniLM (nothing downloaded), stored
    in model2vec's folder layout, a text's vector the normalised mean of its tokens' rows."""
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    from corekit.embeddings import STATIC_DIMS, static_model_dir

    folder = static_model_dir()
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    table = load_file(str(folder / "model.safetensors"))["embeddings"]
    assert table.shape[1] == STATIC_DIMS
    texts = ["Write a poem about owls.", "write a poem about owls!", "How do tides work?"]
    vecs = embed(texts, backend="static")
    assert vecs.shape == (3, STATIC_DIMS)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    # the mean of the rows of the text's tokens (word pieces, no special tokens)
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    ids = tok.encode(texts[2], add_special_tokens=False).ids
    want = table[ids].mean(0)
    assert np.allclose(vecs[2], want / np.linalg.norm(want), atol=1e-6)
    # a case and punctuation change stays closer than another request
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2]
    assert embed([""], backend="static").shape == (1, STATIC_DIMS)  # no tokens: a zero row


def test_plain_model2vec_loads_the_static_folder_and_gives_the_same_vectors():
    model2vec = pytest.importorskip("model2vec")  # installed with the `bench` extra
    from corekit.embeddings import static_model_dir

    texts = ["Write a poem about owls.", "How do tides work?", "Résumé en trois phrases."]
    theirs = model2vec.StaticModel.from_pretrained(str(static_model_dir())).encode(texts)
    assert np.allclose(theirs, embed(texts, backend="static"), atol=1e-5)


def test_a_dedup_step_can_ask_for_the_static_backend_and_gets_its_threshold():
    from corekit.embeddings import STATIC_THRESHOLD
    from datakit.ops import OpContext
    from datakit.ops.dedup import run

    texts = ["Write a short poem about owls.", "  WRITE A SHORT POEM ABOUT OWLS !", *TEXTS]
    recs = [
        {"id": str(i), "instruction": t, "input": "", "output": ""} for i, t in enumerate(texts)
    ]
    ctx = OpContext()
    kept = run([recs], ctx, fields="instruction", embedding_backend="static")
    assert ctx.stats["embedding_backend"] == "static"
    assert ctx.stats["threshold"] == STATIC_THRESHOLD
    assert "1" not in {r["id"] for r in kept}  # the copy, case and punctuation changed
    assert {r["record"]["id"]: r["kept"] for r in ctx.rejects}["1"] == "0"
    from corekit.errors import ToolkitError

    with pytest.raises(ToolkitError, match="embedding_backend 'fasttext'"):
        run([recs], OpContext(), embedding_backend="fasttext")


LONG_PROMPT = " ".join(
    f"Section {i}: the committee reviewed the budget, the schedule and the staffing plan "
    "for the coming quarter and asked for a short written summary of each part."
    for i in range(20)
)  # about 560 words: far past the encoder's window


@pytest.mark.numeric
def test_a_long_shared_prompt_does_not_hide_different_answers():
    """Before: MiniLM read only the first 256 word pieces, so two records with the same
    long prompt and different answers embedded identically and one was dropped."""
    answers = (
        "The budget grows by four percent, mainly for travel.",
        "Staffing: two engineers leave and one designer joins in May.",
    )
    texts = [f"{LONG_PROMPT}\n{a}" for a in answers]
    truncated = embed(texts)
    assert float(truncated[0] @ truncated[1]) > 0.99  # what the encoder alone sees
    parts = ([LONG_PROMPT, LONG_PROMPT], list(answers))
    assert semantic_pairs(texts, SEMANTIC_THRESHOLD, parts=parts) == []
    same = semantic_pairs([texts[0], texts[0]], SEMANTIC_THRESHOLD,
                          parts=([LONG_PROMPT] * 2, [answers[0]] * 2))  # fmt: skip
    assert same and same[0][2] >= 0.999  # an exact copy is still a duplicate
    from corekit.embeddings import embed_whole

    whole = embed_whole(texts)  # every window read: closer to telling them apart
    assert float(whole[0] @ whole[1]) < float(truncated[0] @ truncated[1])
    short = ["Explain how tides work.", "Write a poem."]
    assert np.allclose(embed_whole(short), embed(short))  # within the window: unchanged


@pytest.mark.numeric
def test_dedup_with_prompt_response_keeps_different_answers_to_one_long_prompt(store):
    rows = [
        {"instruction": LONG_PROMPT, "input": "", "output": a}
        for a in (
            "The budget grows by four percent, mainly for travel.",
            "Staffing: two engineers leave and one designer joins in May.",
            "The budget grows by four percent, mainly for travel.",  # a true duplicate
        )
    ]
    rows[2]["input"] = " "  # another record, the same exchange
    store.write("long", rows, "instruction")
    from datakit.ops.step import run_step

    res = run_step(store, "long-dedup", "dedup", ["long"], {})
    assert len(list(res.version.records())) == 2


def test_the_int8_path_tokenizes_as_transformers_does():
    """The fast path runs the model's tokenizer.json with the tokenizers library (no
    transformers import at start): the same ids, masks and type ids as transformers' own
    tokenizer with the model's window, on texts with accents, CJK, emoji, odd spacing and
    past the window."""
    import random
    from pathlib import Path

    import numpy as np
    from transformers import AutoTokenizer

    from corekit.embeddings import _tokenizer, default_embedding_model

    path = Path(default_embedding_model())
    auto = AutoTokenizer.from_pretrained(str(path))
    mine = _tokenizer(path, 256)
    rng = random.Random(0)
    words = "the Quick fox Ümlaut naïve café 東京 🤖 don't e-mail C++ x=3.14 \t  two".split(" ")
    texts = ["", " ", "a"] + [
        " ".join(rng.choice(words) for _ in range(rng.randint(1, 400))) for _ in range(120)
    ]
    assert max(len(t.split()) for t in texts) > 300  # past the 256-token window
    for i in range(0, len(texts), 16):
        batch = texts[i : i + 16]
        want = auto(batch, padding=True, truncation=True, max_length=256, return_tensors="np")
        got = mine(batch)
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            assert np.array_equal(want[key], got[key]), (i, key)
