"""Train the refusal detector's weights (``refusal_model.json``) on the training part of
``refusal_set.jsonl``: a multinomial logistic regression (scikit-learn) over
corekit.refusal.features (MiniLM embeddings of the completion and its opening, and the rule
features). The regularisation strength is chosen by cross-validation grouped by request
topic on the training part only; the validation and held-out parts are scored once, after.

    python -m evalkit.data.train_refusal_model      # rewrites corekit/refusal_model.json
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
SET = HERE / "refusal_set.jsonl"
OUT = HERE.parent.parent / "corekit" / "refusal_model.json"
C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)


def rows(split: str | None = None) -> list[dict]:
    data = [json.loads(x) for x in SET.read_text().splitlines() if x.strip()]
    return [r for r in data if split is None or r["split"] == split]


def fit(x, y, c: float):  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=5000, class_weight="balanced").fit(x, y)


def main() -> None:
    import numpy as np
    from sklearn.model_selection import GroupKFold

    from corekit.refusal import LABELS, RULE_FEATURES, classify_many, features

    train = rows("train")
    x = features([r["completion"] for r in train])
    y = np.asarray([r["label"] for r in train])
    groups = np.asarray([r["topic"] for r in train])
    scores = {}
    for c in C_GRID:
        acc = []
        for tr, te in GroupKFold(n_splits=5).split(x, y, groups):
            pred = fit(x[tr], y[tr], c).predict(x[te])
            acc.append(np.mean((pred != "none") == (y[te] != "none")))
        scores[c] = float(np.mean(acc))
    best = max(C_GRID, key=lambda c: (scores[c], -c))
    clf = fit(x, y, best)
    model = {
        "about": "refusal detector (corekit.refusal): multinomial logistic regression over "
        "corekit.refusal.features; trained by python -m evalkit.data.train_refusal_model",
        "classes": [str(c) for c in clf.classes_],
        "coef": [[round(float(v), 6) for v in row] for row in clf.coef_],
        "intercept": [round(float(v), 6) for v in clf.intercept_],
        "features": {"embeddings": 2, "rules": list(RULE_FEATURES)},
        "C": best,
        "cv_binary_accuracy": {str(k): round(v, 4) for k, v in scores.items()},
        "trained_on": {"file": SET.name, "rows": len(train)},
    }
    assert set(model["classes"]) == set(LABELS)
    OUT.write_text(json.dumps(model) + "\n")
    from corekit import refusal

    refusal._MODEL.clear()
    print(f"wrote {OUT} (C={best}; grouped CV binary accuracy {scores})")
    for split in ("train", "validation", "heldout"):
        data = rows(split)
        got = classify_many([r["completion"] for r in data])
        three = np.mean([g == r["label"] for g, r in zip(got, data, strict=True)])
        binary = np.mean(
            [(g != "none") == (r["label"] != "none") for g, r in zip(got, data, strict=True)]
        )
        print(f"  {split:<10} n={len(data):<4} 3-way {three:.3f}  binary {binary:.3f}")


if __name__ == "__main__":
    main()
