"""Item by item: what two models of one eval run answered, and which items changed.

The per-suite files of every model (``<suite>.items.jsonl``: each metric's value per item;
``<suite>.predictions.jsonl``: prompt and output) are joined by item id. An item is *won*
when the compared model (the gated one) does better on it than the reference (the base),
summed over the suite's metrics in each metric's direction, *lost* when it does worse, and
*same* otherwise. report.html shows every item (filterable, searchable) and summary.md the
largest wins and losses per suite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .scoring import read_items


@dataclass
class Item:
    suite: str
    id: str
    prompt: str
    outputs: dict[str, str] = field(default_factory=dict)  # model label -> output
    values: dict[str, dict[str, float]] = field(default_factory=dict)  # label -> metric -> value
    labels: dict[str, str] = field(default_factory=dict)  # label -> refusal detector's label
    gain: float = 0.0  # signed, in each metric's better direction

    @property
    def status(self) -> str:
        return "won" if self.gain > 0 else "lost" if self.gain < 0 else "same"


def _rows(path: Path) -> dict[str, dict[str, Any]]:
    """A predictions file by item id (none when the model wrote none)."""
    import orjson

    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        if line.strip():
            r = orjson.loads(line)
            out[str(r.get("id"))] = r
    return out


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list):  # chat messages
        return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in prompt if m)
    return "" if prompt is None else str(prompt)


def collect(
    reports: dict[str, dict[str, Any]], out: Path, ref: str | None, cur: str | None
) -> dict[str, list[Item]]:
    """Suite -> its items, joined across the models' files under ``out/<label>/``; gains of
    ``cur`` over ``ref`` (none when either is missing or they are the same label)."""
    suites: dict[str, dict[str, Item]] = {}
    directions: dict[tuple[str, str], bool] = {}
    for label, rep in reports.items():
        for s in rep.get("suites", []):
            name = s["suite"]
            for m in s.get("metrics", []):
                directions[(name, m["metric"])] = bool(m.get("higher_is_better", True))
            items = read_items(out / label, s) if s.get("items_file") else {}
            preds = _rows(out / label / s.get("predictions_file", f"{name}.predictions.jsonl"))
            bucket = suites.setdefault(name, {})
            for iid in list(items) + [k for k in preds if k not in items]:
                it = bucket.get(iid)
                if it is None:
                    p = preds.get(iid, {})
                    it = bucket[iid] = Item(name, iid, _prompt_text(p.get("prompt")))
                p = preds.get(iid)
                if p is not None:
                    it.outputs[label] = p.get("output") or (
                        f"[error: {p['error']}]" if p.get("error") else ""
                    )
                    if not it.prompt:
                        it.prompt = _prompt_text(p.get("prompt"))
                row = items.get(iid, {})
                it.values[label] = {
                    k: float(v)
                    for k, v in row.items()
                    if (name, k) in directions
                    and isinstance(v, (int, float))
                    and not isinstance(v, bool)
                }
                if isinstance(row.get("refusal"), str):
                    it.labels[label] = row["refusal"]
    if ref and cur and ref != cur:
        for bucket in suites.values():
            for it in bucket.values():
                a, b = it.values.get(ref, {}), it.values.get(cur, {})
                gain = 0.0
                for k in a.keys() & b.keys():
                    d = b[k] - a[k]
                    gain += d if directions.get((it.suite, k), True) else -d
                it.gain = round(gain, 6)
    return {s: list(b.values()) for s, b in suites.items()}


def extremes(items: list[Item], k: int = 5) -> tuple[list[Item], list[Item]]:
    """The ``k`` largest wins and the ``k`` largest losses (ties by item id)."""
    won = sorted((i for i in items if i.gain > 0), key=lambda i: (-i.gain, i.id))[:k]
    lost = sorted((i for i in items if i.gain < 0), key=lambda i: (i.gain, i.id))[:k]
    return won, lost


def _short(text: str, n: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _last_line(prompt: str) -> str:
    """The part of a prompt that tells items apart: its last line (a QA prompt's question
    comes after the shared instruction and the context)."""
    lines = [x for x in prompt.strip().splitlines() if x.strip()]
    return lines[-1] if lines else ""


def markdown_changes(items: dict[str, list[Item]], ref: str, cur: str, k: int = 5) -> list[str]:
    """summary.md's section: per suite, the counts and the largest wins and losses."""
    lines = ["", f"## Item by item: {cur} against {ref}", ""]
    for suite, its in items.items():
        n = {s: sum(i.status == s for i in its) for s in ("won", "lost", "same")}
        lines.append(f"**{suite}**: {n['won']} won, {n['lost']} lost, {n['same']} unchanged")
        won, lost = extremes(its, k)
        for title, group in (("largest wins", won), ("largest losses", lost)):
            if not group:
                continue
            lines += [
                "",
                f"{title}:",
                "",
                f"| item | gain | prompt | {ref} | {cur} |",
                "|---|---|---|---|---|",
            ]
            for i in group:
                cells = [
                    _short(i.prompt),
                    _short(i.outputs.get(ref, "")),
                    _short(i.outputs.get(cur, "")),
                ]
                cells = [c.replace("|", "\\|") for c in cells]
                lines.append(f"| {i.id} | {i.gain:+.3f} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


_SCRIPT = """
(function () {
  var q = document.getElementById('item-search'), f = document.getElementById('item-filter');
  var rows = document.querySelectorAll('#items tbody tr'), shown = document.getElementById('item-shown');
  function apply() {
    var text = q.value.toLowerCase(), want = f.value, n = 0;
    rows.forEach(function (r) {
      var st = r.getAttribute('data-status');
      var ok = (want === 'all' || (want === 'changed' ? st !== 'same' : st === want)) &&
               (!text || r.textContent.toLowerCase().indexOf(text) >= 0);
      r.style.display = ok ? '' : 'none';
      n += ok ? 1 : 0;
    });
    shown.textContent = n + ' of ' + rows.length + ' items';
  }
  q.addEventListener('input', apply);
  f.addEventListener('change', apply);
  apply();
})();
"""


def html_items(
    items: dict[str, list[Item]], labels: list[str], ref: str | None, cur: str | None
) -> str:
    """The per-item table of report.html with a status filter and a search box (plain
    JavaScript inside the page; no network)."""
    import html

    e = html.escape
    compared = bool(ref and cur and ref != cur)
    head = "".join(f"<th>{e(x)} output</th>" for x in labels)
    parts = [
        "<h2 id='per-item'>Item by item</h2>",
        f"<p>{e(cur)} against {e(ref)}: an item is won or lost by the sum of its metrics' "
        "changes, each in its better direction.</p>"
        if compared
        else "",
        "<p><label>show <select id='item-filter'><option value='all'>all</option>"
        "<option value='changed'>changed</option><option value='won'>won</option>"
        "<option value='lost'>lost</option><option value='same'>unchanged</option></select></label> "
        "<label>search <input id='item-search' type='search' placeholder='prompt, output, id'></label> "
        "<span id='item-shown'></span></p>",
        "<table id='items'><thead><tr><th>suite</th><th>item</th><th>status</th><th>prompt</th>"
        f"{head}<th>metrics</th></tr></thead><tbody>",
    ]
    for suite, its in items.items():
        for i in its:
            metrics = []
            for x in labels:
                vals = ", ".join(f"{k} {v:g}" for k, v in sorted(i.values.get(x, {}).items()))
                lab = f"; detector: {i.labels[x]}" if x in i.labels else ""
                metrics.append(f"<div><b>{e(x)}</b>: {e(vals or '-')}{e(lab)}</div>")
            status = i.status if compared else "same"
            parts.append(
                f"<tr data-status='{status}' data-suite='{e(suite)}' data-item='{e(i.id)}'>"
                f"<td>{e(suite)}</td><td>{e(i.id)}</td><td class='st-{status}'>{status}"
                f"{f' ({i.gain:+.3g})' if i.gain else ''}</td><td class='txt'>{e(i.prompt)}</td>"
                + "".join(f"<td class='txt'>{e(i.outputs.get(x, ''))}</td>" for x in labels)
                + f"<td>{''.join(metrics)}</td></tr>"
            )
    parts.append("</tbody></table>")
    parts.append(f"<script>{_SCRIPT}</script>")
    return "\n".join(p for p in parts if p)
