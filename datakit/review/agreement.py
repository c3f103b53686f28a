"""Agreement between annotators on a review: per level (decision, rating, pairwise),
the share of records they agree on and Cohen's kappa per pair of annotators."""

from __future__ import annotations

from typing import Any

from .core import Review


def agreement(review: Review) -> dict[str, dict[str, Any]]:
    """Inter-annotator agreement per question, on the records at least two annotators
    answered: Cohen's kappa for two annotators (linear weights for ratings), Krippendorff's
    alpha for more (nominal for decisions and verdicts, ordinal for ratings)."""
    state = review.state()
    questions: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {
        "decision": ("nominal", {}),
        "preference": ("nominal", {}),
        **{f"rating:{c}": ("ordinal", {}) for c in review.criteria},
    }
    for rid, s in state.items():
        for who, e in s.decisions.items():
            if e["action"] != "skip":
                questions["decision"][1].setdefault(rid, {})[who] = (
                    "accept" if e["action"] in ("accept", "edit") else "reject"
                )
        for who, v in s.verdicts.items():
            questions["preference"][1].setdefault(rid, {})[who] = v
        for who, ratings in s.ratings.items():
            for c, v in ratings.items():
                if f"rating:{c}" in questions:
                    questions[f"rating:{c}"][1].setdefault(rid, {})[who] = v
    out = {}
    for q, (level, answers) in questions.items():
        res = _agree(answers, level)
        if res:
            out[q] = res
    return out


RATING_SCALE = (1, 2, 3, 4, 5)


def _agree(answers: dict[str, dict[str, Any]], level: str) -> dict[str, Any] | None:
    """Agreement on one question; None when nobody answered it. Undefined agreement (no
    record with two annotators, or one label only, where kappa and alpha divide by zero)
    is reported with ``value: None`` and the reason."""
    if not answers:
        return None
    shared = {rid: a for rid, a in answers.items() if len(a) >= 2}
    annotators = sorted({w for a in answers.values() for w in a})
    if not shared:
        return {
            "metric": None,
            "annotators": annotators,
            "items": 0,
            "value": None,
            "undefined": "no record has answers from two annotators",
        }
    annotators = sorted({w for a in shared.values() for w in a})
    labels = {v for a in shared.values() for v in a.values()}
    if len(annotators) == 2:
        res = _kappa(shared, annotators[0], annotators[1], level)
        res["annotators"] = annotators
        return res
    import krippendorff
    import numpy as np

    values = sorted(labels, key=str)
    code = {v: i for i, v in enumerate(values)}
    res: dict[str, Any] = {
        "metric": f"krippendorff_alpha_{level}",
        "annotators": annotators,
        "items": len(shared),
    }
    if len(labels) < 2:
        res.update(value=None, undefined=f"one label only ({next(iter(labels))!r})")
    else:
        matrix = np.full((len(annotators), len(shared)), np.nan)
        for j, a in enumerate(shared.values()):
            for who, v in a.items():
                matrix[annotators.index(who), j] = code[v] if level == "nominal" else float(v)
        alpha = krippendorff.alpha(reliability_data=matrix, level_of_measurement=level)
        res["value"] = round(float(alpha), 4)
    # beside the overall alpha, each pair of annotators' kappa (where they share records)
    pairwise = {}
    for i, a in enumerate(annotators):
        for b in annotators[i + 1 :]:
            both = {rid: x for rid, x in shared.items() if a in x and b in x}
            if both:
                pairwise[f"{a}~{b}"] = _kappa(both, a, b, level)
    res["pairwise"] = pairwise
    return res


def _kappa(shared: dict[str, dict[str, Any]], a: str, b: str, level: str) -> dict[str, Any]:
    """Cohen's kappa of two annotators on the records both answered; linear weights on the
    full 1-5 scale for ratings (not only the values that happened to be used)."""
    from sklearn.metrics import cohen_kappa_score

    pairs = [(x[a], x[b]) for x in shared.values() if a in x and b in x]
    res: dict[str, Any] = {
        "metric": "cohen_kappa" + ("_linear" if level == "ordinal" else ""),
        "items": len(pairs),
        "observed_agreement": round(sum(x == y for x, y in pairs) / len(pairs), 4),
    }
    labels_used = {v for p in pairs for v in p}
    if len(labels_used) < 2:
        res.update(value=None, undefined=f"one label only ({next(iter(labels_used))!r})")
        return res
    if level == "ordinal":
        ya, yb = [int(p[0]) for p in pairs], [int(p[1]) for p in pairs]
        value = cohen_kappa_score(ya, yb, labels=list(RATING_SCALE), weights="linear")
    else:
        values = sorted(labels_used, key=str)
        code = {v: i for i, v in enumerate(values)}
        value = cohen_kappa_score([code[p[0]] for p in pairs], [code[p[1]] for p in pairs])
    res["value"] = round(float(value), 4)
    return res


# ------------------------------------------------------------------------------- commit
