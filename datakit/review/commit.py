"""The commit of a review: accepted and edited records (by majority; conflicts stay out)
become a new dataset version, with ratings, pairwise verdicts and rankings turned into
preference pairs where asked."""

from __future__ import annotations

from collections import Counter
from typing import Any

from corekit.errors import ToolkitError

from ..records import answer_text, with_response
from .agreement import agreement
from .core import STATUSES, RecordState, Review, prompt_text


def commit(review: Review, out: str | None = None, message: str | None = None) -> dict[str, Any]:
    """Write the accepted and edited records as the next version of ``out`` (default: the
    reviewed dataset's name), parent the reviewed version; ranked candidates become a
    ``preference`` version ``<out>-preferences``. Returns what was written."""
    v = review.version
    state = review.state()
    entries = review.entries()
    if not entries:
        raise ToolkitError(f"{v.ref}: nothing to commit (no annotations yet)")
    kept, rejects, pairs = [], [], []
    counts: Counter = Counter()
    for rec in review.records:
        s = state.get(rec["id"]) or RecordState()
        outcome = s.outcome()
        counts[outcome] += 1
        for pair in _ranked_pairs(rec, s, review.seed):
            pairs.append(pair)
        if outcome not in ("accepted", "edited"):
            if outcome in ("rejected", "conflict"):
                reasons = [e.get("reason") for e in s.decisions.values() if e.get("reason")]
                rejects.append({"record": rec, "reason": f"review_{outcome}", "notes": reasons})
            continue
        kept.append(_reviewed_record(rec, s, review))
    if not kept:
        raise ToolkitError(
            f"{v.ref}: no record is accepted yet ({counts.get('rejected', 0)} rejected, "
            f"{counts.get('todo', 0)} not reviewed); nothing to commit"
        )
    name = out or v.name
    actions = Counter(e["action"] for e in entries)
    agree = agreement(review)
    review_stats = {
        "reviewed": v.ref,
        "annotations": len(entries),
        "actions": dict(sorted(actions.items())),
        "annotators": sorted({e["annotator"] for e in entries}),
        "outcomes": {k: counts.get(k, 0) for k in STATUSES},
        "agreement": {q: a["value"] for q, a in agree.items()},
    }
    config = {"reviewed": v.ref, "annotations": len(entries), "criteria": list(review.criteria)}
    written = review.store.write(
        name,
        kept,
        v.kind,
        parents=[v.ref],
        step="review",
        config=config,
        message=message,
        source=str(review.log_path),
        extra_files={"rejects.jsonl": rejects, "annotations.jsonl": entries},
        extra_stats={"review": review_stats},
    )
    result = {
        "version": written.ref,
        "kept": len(kept),
        "review": review_stats,
        "log_lines_skipped": len(review.skipped),
    }
    if pairs:
        pv = review.store.write(
            f"{name}-preferences",
            pairs,
            "preference",
            parents=[v.ref],
            step="review-rankings",
            config=config,
            source=str(review.log_path),
        )
        result["preferences"] = {"version": pv.ref, "pairs": len(pairs)}
    return result


def _reviewed_record(rec: dict[str, Any], s: RecordState, review: Review) -> dict[str, Any]:
    """A kept record as committed: the annotator's edit applied, a preference pair swapped
    when people preferred its rejected response, and what the review said in
    ``meta.review`` (votes, annotators, verdict, mean ratings, comments)."""
    v = review.version
    out_rec = dict(rec)
    info: dict[str, Any] = {
        "reviewed": v.ref,
        "votes": dict(s.votes()),
        "annotators": sorted(s.decided_by()),
    }
    if s.edit:
        out_rec = with_response(rec, s.edit["after"])
        info.update(
            original=s.edit["original"], original_id=rec["id"], edited_by=s.edit["annotator"]
        )
    verdict = _majority(s.verdicts.values())
    if "chosen" in rec and verdict == "rejected":  # people preferred the other response
        out_rec = {k: x for k, x in out_rec.items() if k != "id"}
        out_rec["chosen"], out_rec["rejected"] = rec["rejected"], rec["chosen"]
        info["swapped"] = True
    if verdict:
        info["verdict"] = verdict
    means = _mean_ratings(s, review.criteria)
    if means:
        info["ratings"] = means
    if s.comments:
        info["comments"] = [{"annotator": c["annotator"], "text": c["after"]} for c in s.comments]
    out_rec["meta"] = {**(rec.get("meta") or {}), "review": info}
    return out_rec


def _majority(values: Any) -> str | None:
    c = Counter(values)
    if not c:
        return None
    (top, n), *rest = c.most_common()
    if rest and rest[0][1] == n:
        return None
    return top if top != "tie" else None


def _mean_ratings(s: RecordState, criteria: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for c in criteria:
        vals = [r[c] for r in s.ratings.values() if c in r]
        if vals:
            out[c] = round(sum(vals) / len(vals), 3)
    return out


def _ranked_pairs(rec: dict[str, Any], s: RecordState, seed: int) -> list[dict[str, Any]]:
    """Preference pairs from rankings of ``meta.candidates``: for each annotator's ranking,
    every (better, worse) pair; a pair two annotators ordered differently is left out."""
    if not s.rankings or "chosen" in rec:
        return []
    cands = (rec.get("meta") or {}).get("candidates") or []
    better: Counter = Counter()
    for order in s.rankings.values():
        for i, a in enumerate(order):
            for b in order[i + 1 :]:
                better[(a, b)] += 1
    out = []
    for (a, b), n in sorted(better.items()):
        if n > better.get((b, a), 0):
            out.append(
                {
                    "prompt": prompt_text(rec),
                    "chosen": [{"role": "assistant", "content": answer_text(cands[int(a[1:])])}],
                    "rejected": [{"role": "assistant", "content": answer_text(cands[int(b[1:])])}],
                    "meta": {
                        "source": "review",
                        "from_record": rec["id"],
                        "votes": n,
                        "against": better.get((b, a), 0),
                    },
                }
            )
    return out
