"""Store write speed: `datakit import` of chat records against the plain loop doing the same work.

The plain loop is what a competent user would write for "check and store this file": read
each line, parse it with orjson, validate it with one reused compiled validator (the same
jsonschema-rs validator datakit uses), give it a content-hash id, write it out and hash the
output. `datakit import` is timed as a whole command, in-process (Click's runner), on the
same file: format reading, validation, ids, stats, manifest, fsync and the atomic rename.
Both are run twice, alternating which goes first; the best time of each counts.

Run: python bench/store.py [--quick] [-n N]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.validate import make_records  # noqa: E402


def valid_records(n: int) -> list[dict]:
    out = []
    for i, rec in enumerate(make_records(n, seed=3)):
        msgs = rec["messages"]
        if (
            not msgs
            or any(not isinstance(m.get("content"), str) for m in msgs)
            or any(m["role"] == "robot" for m in msgs)
        ):
            msgs = [{"role": "user", "content": f"question {i}"}]
        out.append({"messages": msgs, "meta": {"source": "bench"}})
    return out


def plain_loop(src: Path, out_path: Path) -> float:
    import orjson

    from corekit.schemas import content_fields
    from datakit.validate import validator_for

    fast = validator_for("chat")._fast  # the compiled jsonschema-rs validator, reused
    fields = content_fields("chat")
    t = time.perf_counter()
    h = hashlib.sha256()
    with open(src, "rb") as f, open(out_path, "wb") as out:
        for line in f:
            rec = orjson.loads(line)
            if not fast.is_valid(rec):
                raise SystemExit("bench data must be valid")
            content = {k: rec[k] for k in fields if k in rec}
            blob = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
            rec["id"] = hashlib.sha256(blob).hexdigest()[:16]
            b = orjson.dumps(rec) + b"\n"
            out.write(b)
            h.update(b)
        out.flush()
    return time.perf_counter() - t


def datakit_import(src: Path, root: Path, name: str) -> float:
    from click.testing import CliRunner

    from datakit.cli import cli

    t = time.perf_counter()
    res = CliRunner().invoke(
        cli, ["import", str(src), "--name", name, "--data-root", str(root), "-q", "--json"]
    )
    elapsed = time.perf_counter() - t
    if res.exit_code != 0:
        raise SystemExit(f"datakit import failed: {res.output}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="10,000 records (seconds)")
    ap.add_argument("-n", type=int, default=None, help="number of records (default 100,000)")
    args = ap.parse_args()
    n = args.n or (10_000 if args.quick else 100_000)

    import orjson

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        src = d / "chat.jsonl"
        with open(src, "wb") as f:
            for rec in valid_records(n):
                f.write(orjson.dumps(rec) + b"\n")
        warm = d / "warm.jsonl"
        warm.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in valid_records(200)))
        plain_loop(warm, d / "warm.out"), datakit_import(warm, d / "warm-root", "warm")

        t_plain, t_ours = [], []
        for rnd in range(2):
            order = ("plain", "ours") if rnd % 2 == 0 else ("ours", "plain")
            for which in order:
                if which == "plain":
                    t_plain.append(plain_loop(src, d / "plain.out"))
                else:
                    root = d / f"root{rnd}"
                    t_ours.append(datakit_import(src, root, "chat"))
                    shutil.rmtree(root)
        mb = src.stat().st_size / 2**20

    best_plain, best_ours = min(t_plain), min(t_ours)
    print(f"records: {n} ({mb:.0f} MB)")
    print(f"plain_loop_s: {best_plain:.2f}")
    print(f"datakit_import_s: {best_ours:.2f}")
    print(f"write_records_per_s: {n / best_ours:,.0f}")
    print(f"import_ratio_vs_plain_loop: {best_plain / best_ours:.2f} (goal >= 0.5)")


if __name__ == "__main__":
    main()
