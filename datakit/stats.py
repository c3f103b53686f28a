"""What a dataset version looks like: counts, lengths, diversity, sources, judge scores.

``dataset_stats`` returns plain data (``datakit stats`` renders it; ``--plot`` draws it):
- counts by record kind and turns;
- length distributions (characters and words) of prompts and responses: min, percentiles,
  max, mean;
- diversity, the signs of mode collapse: distinct-1/2/3 (unique n-grams over all n-grams of
  the responses) and self-similarity (mean ROUGE-L F of sampled response pairs; high means
  the responses repeat each other);
- the mix of ``meta.source`` values and the histogram of judge quality scores.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from corekit.diversity import distinct_n, self_similarity

from .records import answer_text, exchange, prompt_messages, response_text

_BINS = [i / 10 for i in range(11)]


def _texts(rec: dict[str, Any]) -> tuple[str, str]:
    if "instruction" in rec or "messages" in rec:
        return exchange(rec)
    prompt = " ".join(m.get("content") or "" for m in prompt_messages(rec))
    answer = response_text(rec)
    if answer is None:  # an eval item: its reference answers
        answer = answer_text(rec.get("references"))
    return prompt, answer


def _dist(values: list[int]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    s = sorted(values)

    def pct(p: float) -> int:
        return s[min(len(s) - 1, int(p * (len(s) - 1) + 0.5))]

    return {
        "n": len(s),
        "min": s[0],
        "p10": pct(0.1),
        "p50": pct(0.5),
        "p90": pct(0.9),
        "max": s[-1],
        "mean": round(sum(s) / len(s), 1),
    }


def dataset_stats(records: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    prompts, responses = zip(*(_texts(r) for r in records), strict=True) if records else ((), ())
    sources = Counter((r.get("meta") or {}).get("source") or "unknown" for r in records)
    qualities = [
        q
        for r in records
        if isinstance(q := ((r.get("meta") or {}).get("judge") or {}).get("quality"), (int, float))
    ]
    hist = [0] * 10
    for q in qualities:
        hist[min(9, int(q * 10))] += 1
    turns = [len(r["messages"]) for r in records if "messages" in r]
    return {
        "records": len(records),
        "kind": kind,
        "turns": _dist(turns) if turns else None,
        "prompt_chars": _dist([len(p) for p in prompts]),
        "response_chars": _dist([len(t) for t in responses]),
        "response_words": _dist([len(t.split()) for t in responses]),
        "distinct_1": distinct_n(list(responses), 1),
        "distinct_2": distinct_n(list(responses), 2),
        "distinct_3": distinct_n(list(responses), 3),
        "self_similarity": self_similarity(list(responses)),
        "sources": dict(sources.most_common()),
        "judge": {
            "judged": len(qualities),
            "mean_quality": round(sum(qualities) / len(qualities), 4) if qualities else None,
            "histogram": {f"{_BINS[i]:.1f}-{_BINS[i + 1]:.1f}": hist[i] for i in range(10)},
        },
    }


def format_stats(ref: str, st: dict[str, Any]) -> str:
    lines = [f"{ref}: {st['records']} {st['kind']} records"]

    def dist(name: str, d: dict[str, Any] | None) -> None:
        if d and d.get("n"):
            lines.append(
                f"  {name:<15} min {d['min']}  p10 {d['p10']}  median {d['p50']}  "
                f"p90 {d['p90']}  max {d['max']}  mean {d['mean']}"
            )

    dist("prompt chars", st["prompt_chars"])
    dist("response chars", st["response_chars"])
    dist("response words", st["response_words"])
    dist("turns", st["turns"])
    ss = st["self_similarity"]
    lines.append(
        f"  diversity       distinct-1 {st['distinct_1']}  distinct-2 {st['distinct_2']}  "
        f"distinct-3 {st['distinct_3']}  self-similarity {ss if ss is not None else '-'}"
    )
    lines.append("  sources         " + ", ".join(f"{k} {v}" for k, v in st["sources"].items()))
    j = st["judge"]
    if j["judged"]:
        bars = "  ".join(f"{k}:{v}" for k, v in j["histogram"].items() if v)
        lines.append(f"  judge quality   {j['judged']} judged, mean {j['mean_quality']}  ({bars})")
    return "\n".join(lines)


def plot_stats(
    ref: str, records: list[dict[str, Any]], st: dict[str, Any], out: Path
) -> list[Path]:
    """PNG charts: response length histogram, source mix, judge quality histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from corekit.runs import atomic_file

    out.mkdir(parents=True, exist_ok=True)
    stem = ref.replace("@", "_")
    written = []
    charts = [
        ("lengths", "response length (words)", [len(_texts(r)[1].split()) for r in records]),
    ]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(charts[0][2] or [0], bins=30, color="#4C72B0")
    ax.set_xlabel(charts[0][1])
    ax.set_ylabel("records")
    ax.set_title(f"{ref}: response lengths")
    written.append(_save(fig, out / f"{stem}_lengths.png", atomic_file, plt))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = list(st["sources"])
    ax.barh(names, [st["sources"][n] for n in names], color="#55A868")
    ax.set_xlabel("records")
    ax.set_title(f"{ref}: sources")
    written.append(_save(fig, out / f"{stem}_sources.png", atomic_file, plt))
    if st["judge"]["judged"]:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        labels = list(st["judge"]["histogram"])
        ax.bar(labels, list(st["judge"]["histogram"].values()), color="#C44E52")
        ax.set_xlabel("judge quality")
        ax.set_ylabel("records")
        ax.tick_params(axis="x", labelrotation=45)
        ax.set_title(f"{ref}: judge scores")
        written.append(_save(fig, out / f"{stem}_judge.png", atomic_file, plt))
    return written


def _save(fig: Any, path: Path, atomic_file: Any, plt: Any) -> Path:
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path
