"""Human review of a dataset version: the annotations log and what it adds up to
(agreement.py measures agreement; commit.py turns accepted and edited records into a new
version).

Everything an annotator does is one line appended to
``<data root>/<name>/reviews/v<N>/annotations.jsonl`` (annotator, time, record id, action,
before/after), under a lock, so several annotators (threads of one server, or several
servers) never lose an action. The log is the only state: progress, decisions, agreement
and the commit are all derived from it, so a crashed server loses nothing.

Decisions: ``accept``, ``reject`` and ``skip`` (each with an optional reason) and ``edit``
(a new response text; counts as accept). Per annotator the latest decision counts; across
annotators the majority of accept (edit included) vs reject decides, a tie is a conflict and
stays out of the commit. Ratings (1-5 on named criteria), pairwise verdicts (blind A/B/tie on
preference records), rankings (of a record's ``meta.candidates``) and comments are logged the
same way.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import random
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corekit.errors import ToolkitError

from ..records import answer_text, editable_response, prompt_messages

DEFAULT_CRITERIA = ("clarity", "helpfulness", "accuracy")  # the LLM judge's rubric criteria
log = logging.getLogger(__name__)
DECISIONS = ("accept", "reject", "skip", "edit")
ACTIONS = (*DECISIONS, "rate", "compare", "rank", "comment")
ANNOTATOR_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
MAX_TEXT = 100_000  # an edited response or a comment longer than this is refused
LETTERS = "ABCDEFGHIJ"


class ReviewInputError(ToolkitError):
    """An action the log refuses (bad field, unknown record): shown to the annotator."""


def prompt_text(rec: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        return prompt_messages(rec)
    except (KeyError, ToolkitError):
        return []


def options(rec: dict[str, Any], seed: int = 0) -> list[tuple[str, str]] | None:
    """The responses shown side by side, blind: (key, text) in an order randomised per record
    (the same for every annotator). Keys: ``chosen``/``rejected`` for a preference pair,
    ``c0``, ``c1``, ... for ``meta.candidates``; None for a record with one response."""
    if "chosen" in rec and "rejected" in rec:
        items = [("chosen", answer_text(rec["chosen"])), ("rejected", answer_text(rec["rejected"]))]
    else:
        cands = (rec.get("meta") or {}).get("candidates")
        if not (isinstance(cands, list) and len(cands) >= 2):
            return None
        items = [(f"c{i}", answer_text(c)) for i, c in enumerate(cands[: len(LETTERS)])]
    digest = hashlib.sha256(f"{seed}:{rec.get('id')}".encode()).digest()
    random.Random(digest).shuffle(items)
    return items


def judge_suggestion(rec: dict[str, Any]) -> dict[str, Any] | None:
    """The LLM judge's scores on the record (meta.judge) and the label they suggest; shown
    to the annotator, never applied without their action."""
    judge = (rec.get("meta") or {}).get("judge")
    if not isinstance(judge, dict) or "quality" not in judge:
        return None
    q = judge.get("quality")
    return {
        "scores": judge.get("scores") or {},
        "quality": q,
        "label": "accept" if isinstance(q, (int, float)) and q >= 0.5 else "reject",
        "model": judge.get("model"),
    }


def entry_problem(entry: Any) -> str | None:
    """Why a log line is not an action this UI can use (None when it is)."""
    if not isinstance(entry, dict):
        return "not a JSON object"
    for key in ("annotator", "record", "action"):
        if not isinstance(entry.get(key), str):
            return f"$.{key}: missing or not a string"
    if entry["action"] not in ACTIONS:
        return f"$.action: {entry['action']!r} is not one of {', '.join(ACTIONS)}"
    if entry["action"] == "rate" and not isinstance(entry.get("criterion"), str):
        return "$.criterion: a rating needs its criterion"
    if entry["action"] in ("rate", "compare", "rank") and "after" not in entry:
        return f"$.after: a {entry['action']} needs its value"
    return None


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class RecordState:
    """What the log says about one record."""

    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)  # annotator -> entry
    edit: dict[str, Any] | None = None  # the latest edit, any annotator
    ratings: dict[str, dict[str, int]] = field(default_factory=dict)  # annotator -> crit -> v
    verdicts: dict[str, str] = field(default_factory=dict)  # annotator -> key or "tie"
    rankings: dict[str, list[str]] = field(default_factory=dict)  # annotator -> keys, best first
    comments: list[dict[str, Any]] = field(default_factory=list)

    def status_for(self, annotator: str | None = None) -> str:
        """accepted | edited | rejected | skipped | conflict | todo (for one annotator, or
        the record's outcome over all annotators)."""
        if annotator is not None:
            entry = self.decisions.get(annotator)
            return _STATUS[entry["action"]] if entry else "todo"
        return self.outcome()

    def votes(self) -> Counter:
        return Counter(
            "accept" if e["action"] in ("accept", "edit") else e["action"]
            for e in self.decisions.values()
            if e["action"] != "skip"
        )

    def outcome(self) -> str:
        v = self.votes()
        if not v:
            return "skipped" if self.decisions else "todo"
        if v["accept"] > v["reject"]:
            return "edited" if self.edit else "accepted"
        if v["reject"] > v["accept"]:
            return "rejected"
        return "conflict"

    def decided_by(self) -> set[str]:
        return set(self.decisions)


_STATUS = {"accept": "accepted", "reject": "rejected", "skip": "skipped", "edit": "edited"}
STATUSES = ("todo", "accepted", "edited", "rejected", "skipped", "conflict")


class Review:
    """One version under review: its records, its annotations log, its settings."""

    def __init__(
        self,
        store: Any,
        ref: str,
        criteria: tuple[str, ...] | None = None,
        overlap: int | None = None,
        guidelines: str | None = None,
    ):
        self.store = store
        self.version = store.resolve(ref)
        self.records = list(self.version.records())
        self.by_id = {r["id"]: r for r in self.records}
        self.position = {r["id"]: i for i, r in enumerate(self.records)}
        self.dir = Path(store.root) / self.version.name / "reviews" / f"v{self.version.version}"
        self.log_path = self.dir / "annotations.jsonl"
        self.settings_path = self.dir / "settings.json"
        saved = self._saved_settings()
        self.criteria = tuple(criteria or saved.get("criteria") or DEFAULT_CRITERIA)
        self.overlap = int(overlap or saved.get("overlap") or 1)
        self.guidelines = guidelines if guidelines is not None else saved.get("guidelines", "")
        self.seed = int(saved.get("seed", 0))
        self._lock = threading.Lock()
        self._cache: tuple[int, list[dict[str, Any]]] | None = None
        self._state: tuple[int, dict[str, RecordState]] | None = None
        self.skipped: list[tuple[int, str]] = []  # log lines left out, by entries()
        for c in self.criteria:
            if not re.match(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$", c):
                raise ToolkitError(
                    f"--criteria: {c!r} is not a criterion name (letters, digits, _ -)"
                )
        if self.overlap < 1:
            raise ToolkitError("--overlap: must be at least 1")

    # ------------------------------------------------------------------ settings, log

    def _saved_settings(self) -> dict[str, Any]:
        try:
            return json.loads(self.settings_path.read_text())
        except (OSError, ValueError):
            return {}

    def save_settings(self) -> None:
        from corekit.runs import atomic_write_json

        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            self.settings_path,
            {
                "reviewed": self.version.ref,
                "criteria": list(self.criteria),
                "overlap": self.overlap,
                "guidelines": self.guidelines,
                "seed": self.seed,
            },
        )

    def _file_lock(self) -> Any:
        from filelock import FileLock

        self.dir.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.dir / ".lock"), timeout=60)

    def entries(self) -> list[dict[str, Any]]:
        """Every logged action, oldest first. A line that is not JSON (cut short by a crash)
        or not an action of the right shape is skipped, with a warning naming the line;
        ``self.skipped`` lists them as (line number, reason)."""
        try:
            size = self.log_path.stat().st_size
        except FileNotFoundError:
            self._cache = None
            self.skipped = []
            return []
        if self._cache and self._cache[0] == size:
            return self._cache[1]
        out, skipped = [], []
        with open(self.log_path, "rb") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    skipped.append((n, "not JSON (a line cut short?)"))
                    continue
                why = entry_problem(entry)
                if why is None and entry["record"] not in self.by_id:
                    why = f"$.record: no record {entry['record']!r} in {self.version.ref}"
                if why:
                    skipped.append((n, why))
                    continue
                out.append(entry)
        known = set(self.skipped)
        for n, why in skipped:
            if (n, why) not in known:  # each bad line warned about once
                log.warning("%s:%d: skipped: %s", self.log_path, n, why)
        self.skipped = skipped
        self._cache = (size, out)
        return out

    def append(self, annotator: str, record_id: str, action: str, **data: Any) -> dict[str, Any]:
        """Check one action and append it to the log; returns the logged entry."""
        if not isinstance(annotator, str) or not ANNOTATOR_RE.match(annotator):
            raise ReviewInputError(
                "annotator: a name of 1-40 letters, digits, '.', '_' or '-' is required"
            )
        rec = self.by_id.get(record_id) if isinstance(record_id, str) else None
        if rec is None:
            raise ReviewInputError(f"record: no record {record_id!r} in {self.version.ref}")
        if action not in ACTIONS:
            raise ReviewInputError(f"action: {action!r} is not one of {', '.join(ACTIONS)}")
        with self._lock, self._file_lock():
            state = self.state().get(record_id) or RecordState()
            entry = {
                "time": now(),
                "annotator": annotator,
                "record": record_id,
                "action": action,
                **self._payload(rec, state, annotator, action, data),
            }
            data_out = (json.dumps(entry, ensure_ascii=False) + "\n").encode()
            fd = os.open(self.log_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                end = os.lseek(fd, 0, os.SEEK_END)
                if end and os.pread(fd, 1, end - 1) != b"\n":
                    data_out = b"\n" + data_out  # close a line a crash left open
                written = 0
                while written < len(data_out):
                    n = os.write(fd, data_out[written:])
                    if n <= 0:
                        raise OSError(f"{self.log_path}: the write stopped after {written} bytes")
                    written += n
                os.fsync(fd)
            finally:
                os.close(fd)
        return entry

    def _payload(
        self, rec: dict[str, Any], state: RecordState, who: str, action: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        def text(key: str, required: bool = False) -> str:
            v = data.get(key)
            if v is None or v == "":
                if required:
                    raise ReviewInputError(f"{key}: required for {action}")
                return ""
            if not isinstance(v, str):
                raise ReviewInputError(f"{key}: must be text")
            if len(v) > MAX_TEXT:
                raise ReviewInputError(f"{key}: longer than {MAX_TEXT} characters")
            return v

        prev = state.decisions.get(who)
        before = _STATUS[prev["action"]] if prev else "todo"
        if action in ("accept", "reject", "skip"):
            return {"reason": text("reason"), "before": before, "after": _STATUS[action]}
        if action == "edit":
            original = editable_response(rec)
            if original is None:
                raise ReviewInputError(
                    f"edit: a {self.version.kind} record has no single response to edit"
                )
            new = text("text", required=True)
            if not new.strip():
                raise ReviewInputError("text: an edited response cannot be empty")
            old = state.edit["after"] if state.edit else original
            return {"before": old, "after": new, "original": original}
        if action == "rate":
            crit = data.get("criterion")
            if crit not in self.criteria:
                raise ReviewInputError(
                    f"criterion: {crit!r} is not one of {', '.join(self.criteria)}"
                )
            value = data.get("value")
            if isinstance(value, str) and value.strip().isdigit():
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 5:
                raise ReviewInputError("value: a rating is a whole number from 1 to 5")
            return {
                "criterion": crit,
                "before": state.ratings.get(who, {}).get(crit),
                "after": value,
            }
        if action == "comment":
            return {"after": text("text", required=True)}
        opts = options(rec, self.seed)
        if opts is None:
            raise ReviewInputError(f"{action}: this record has no responses to compare")
        letters = {LETTERS[i]: key for i, (key, _) in enumerate(opts)}
        if action == "compare":
            if len(opts) != 2:
                raise ReviewInputError(
                    "compare: this record has more than two responses; rank them"
                )
            choice = data.get("choice")
            if choice == "tie":
                winner = "tie"
            elif choice in letters:
                winner = letters[choice]
            else:
                raise ReviewInputError("choice: A, B or tie")
            return {"choice": choice, "before": state.verdicts.get(who), "after": winner}
        order = data.get("order")
        if isinstance(order, str):
            order = [c for c in order.upper() if c.strip() and c != ","]
        if not isinstance(order, list) or sorted(order) != sorted(letters):
            raise ReviewInputError(
                f"order: every response letter once, best first ({''.join(sorted(letters))})"
            )
        return {
            "order": order,
            "before": state.rankings.get(who),
            "after": [letters[c] for c in order],
        }

    # ------------------------------------------------------------------ derived state

    def state(self) -> dict[str, RecordState]:
        """Each record's state, derived from the log (again only when the log grew: a page
        asks for it several times: queue, progress, agreement)."""
        entries = self.entries()
        size = self._cache[0] if self._cache else 0
        if self._state is not None and self._state[0] == size:
            return self._state[1]
        out: dict[str, RecordState] = {}
        for e in entries:
            s = out.setdefault(e["record"], RecordState())
            who, action = e["annotator"], e["action"]
            if action in DECISIONS:
                s.decisions[who] = e
                if action == "edit":
                    s.edit = e
            elif action == "rate":
                s.ratings.setdefault(who, {})[e["criterion"]] = e["after"]
            elif action == "compare":
                s.verdicts[who] = e["after"]
            elif action == "rank":
                s.rankings[who] = e["after"]
            elif action == "comment":
                s.comments.append(e)
        self._state = (size, out)
        return out

    def progress(self, annotator: str | None = None) -> dict[str, Any]:
        state = self.state()
        counts = Counter(
            (state.get(r["id"]) or RecordState()).status_for(annotator) for r in self.records
        )
        total = len(self.records)
        done = sum(
            1
            for r in self.records
            if len((state.get(r["id"]) or RecordState()).decided_by()) >= self.overlap
        )
        return {
            "total": total,
            "done": done,
            "mine": None if annotator is None else sum(v for k, v in counts.items() if k != "todo"),
            "status": {k: counts.get(k, 0) for k in STATUSES},
            "annotations": len(self.entries()),
            "annotators": sorted({e["annotator"] for e in self.entries()}),
            "log_lines_skipped": len(self.skipped),
        }

    def matches(
        self,
        rec: dict[str, Any],
        st: RecordState,
        annotator: str,
        source: str = "",
        min_score: float | None = None,
        max_score: float | None = None,
        status: str = "todo",
        by: str = "",
    ) -> bool:
        meta = rec.get("meta") or {}
        if source and meta.get("source") != source:
            return False
        if min_score is not None or max_score is not None:
            sug = judge_suggestion(rec)
            q = sug["quality"] if sug else None
            if not isinstance(q, (int, float)):
                return False
            if (min_score is not None and q < min_score) or (
                max_score is not None and q > max_score
            ):
                return False
        if by and by not in st.decided_by():
            return False
        if status == "todo":
            return annotator not in st.decisions and len(st.decided_by()) < self.overlap
        if status and status != "all":
            return st.outcome() == status
        return True

    def queue(self, annotator: str, **filters: Any) -> list[str]:
        state = self.state()
        empty = RecordState()
        return [
            r["id"]
            for r in self.records
            if self.matches(r, state.get(r["id"]) or empty, annotator, **filters)
        ]

    def sources(self) -> list[str]:
        return sorted({(r.get("meta") or {}).get("source") or "" for r in self.records} - {""})
