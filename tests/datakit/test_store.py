import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import jsonschema
import pytest

from corekit.errors import ToolkitError
from corekit.schemas import load_schema
from datakit.records import record_id
from tests.conftest import ROOT

ROWS = [{"instruction": f"Say {i}", "output": str(i)} for i in range(5)]


def test_write_and_read_a_version(store):
    v = store.write("seeds", ROWS, "instruction", step="import", config={"a": 1}, message="first")
    assert v.ref == "seeds@v1"
    recs = list(v.records())
    assert [r["output"] for r in recs] == ["0", "1", "2", "3", "4"]
    assert all(r["id"] == record_id(r, "instruction") and r["meta"] == {} for r in recs)
    m = v.manifest()
    jsonschema.validate(m, load_schema("manifest"))
    assert (m["name"], m["version"], m["kind"], m["count"], m["message"]) == (
        "seeds",
        1,
        "instruction",
        5,
        "first",
    )
    assert m["step"]["config_hash"] and m["stats"]["records"] == 5
    v.verify()


def test_ids_are_stable_and_ignore_meta():
    a = {"instruction": "x", "output": "y", "meta": {"source": "seed"}}
    b = {"output": "y", "instruction": "x", "meta": {"source": "evol"}}
    # The id is documented as sha256 over the sorted, compact JSON of the content fields.
    expected = hashlib.sha256(b'{"instruction":"x","output":"y"}').hexdigest()[:16]
    assert record_id(a, "instruction") == record_id(b, "instruction") == expected


def test_addressing(store):
    store.write("d", ROWS[:2], "instruction")
    store.write("d", ROWS, "instruction")
    assert store.resolve("d").version == 2
    assert store.resolve("d@latest").version == 2
    assert store.resolve("d@v1").version == 1
    assert store.resolve("d@1").version == 1
    store.tag("d@v1", "golden")
    assert store.resolve("d@golden").version == 1
    with pytest.raises(ToolkitError, match=r"^d has no version v9 \(versions: v1, v2\)$"):
        store.resolve("d@v9")
    with pytest.raises(ToolkitError, match=r"^d has no tag 'nope' \(tags: golden\)$"):
        store.resolve("d@nope")
    with pytest.raises(ToolkitError, match=r"^no dataset named 'x'; datasets under .*: d$"):
        store.resolve("x")


def test_tags_do_not_move_without_force(store):
    store.write("d", ROWS[:1], "instruction")
    store.write("d", ROWS[:2], "instruction")
    store.tag("d@v1", "best")
    with pytest.raises(
        ToolkitError, match="tag 'best' already points to d@v1; use --force to move it"
    ):
        store.tag("d@v2", "best")
    store.tag("d@v2", "best", force=True)
    assert store.tags("d") == {"best": 2}
    with pytest.raises(ToolkitError, match="invalid tag 'v3'"):
        store.tag("d", "v3")


def test_invalid_record_leaves_nothing(store):
    bad = ROWS[:3] + [{"instruction": "x"}]
    with pytest.raises(
        ToolkitError, match=r"^src.jsonl: record 4: \$: 'output' is a required property$"
    ):
        store.write("d", bad, "instruction", source="src.jsonl")
    assert store.versions("d") == []
    assert not (store.root / "d").exists()  # a failed first version leaves no folder
    store.write("d", ROWS[:3], "instruction")
    with pytest.raises(ToolkitError):
        store.write("d", bad, "instruction", source="src.jsonl")
    # a later failure keeps the dataset and its versions, and leaves no temporary folder
    assert [v.ref for v in store.versions("d")] == ["d@v1"]
    assert sorted(p.name for p in (store.root / "d").iterdir() if p.name != ".lock") == ["v1"]


def test_duplicate_ids_are_refused(store):
    with pytest.raises(ToolkitError, match=r"record 2: \$.id: duplicate id"):
        store.write("d", [ROWS[0], dict(ROWS[0])], "instruction")


def test_reuse_identical(store):
    v1 = store.write("d", ROWS, "instruction", reuse_identical=True)
    v2 = store.write("d", ROWS, "instruction", reuse_identical=True)
    assert (v1.version, v1.reused, v2.version, v2.reused) == (1, False, 1, True)
    assert store.write("d", ROWS, "instruction").version == 2  # default: always a new version


def test_diff(store):
    store.write("d", ROWS[:3], "instruction")
    changed = {**ROWS[2], "meta": {"note": "edited"}}
    store.write("d", [ROWS[0], changed, ROWS[3]], "instruction")
    d = store.diff("d@v1", "d@v2")
    assert [r["output"] for r in d["added"]] == ["3"]
    assert [r["output"] for r in d["removed"]] == ["1"]
    assert d["changed"] == []
    assert [(a["meta"], b["meta"]) for a, b in d["meta_changed"]] == [({}, {"note": "edited"})]
    assert d["meta_keys"] == {"note": 1}
    assert d["unchanged"] == 1


def test_diff_of_two_imports_of_the_same_rows_is_meta_only(tmp_path, cli):
    """Same records from two files: nothing changed in content, only meta.origin."""
    from datakit.cli import cli as datakit

    rows = [{"instruction": f"Say {i}", "output": str(i)} for i in range(60)]
    for name in ("a.jsonl", "b.jsonl"):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
        assert cli(datakit, "import", name, "--name", "d")[0] == 0
    code, out = cli(datakit, "diff", "d@v1", "d@v2")
    assert code == 0
    assert "~0 changed, 60 meta-only changes, 0 unchanged" in out
    assert "meta keys that differ: origin (60)" in out
    code, out = cli(datakit, "diff", "d@v1", "d@v2", "--json")
    assert json.loads(out)["meta_keys"] == {"origin": 60}


WRITER = textwrap.dedent(
    """
    import contextlib, os, sys, time
    from pathlib import Path
    import datakit.store as st
    root, name, tag, n, delay, mode = sys.argv[1:7]
    n, delay = int(n), float(delay)
    marks = Path(root).parent / "marks"
    marks.mkdir(exist_ok=True)

    if mode.startswith("contend"):
        # Both writers start together, then each stays inside the critical section (after
        # the manifest, before the rename) for a while, noting whether the other is inside.
        def hook(tmp):
            me = marks / f"inside-{os.getpid()}"
            me.touch()
            for _ in range(40):
                others = [p for p in marks.glob("inside-*") if p != me]
                if others:
                    (marks / f"overlap-{os.getpid()}").touch()
                time.sleep(0.02)
            me.unlink()
        st._before_rename_hook = hook
        if mode == "contend-nolock":  # proves the test can see a missing lock
            st.DatasetStore._lock = lambda self, name: contextlib.nullcontext()
        (marks / f"ready-{tag}").touch()
        while not (marks / "go").exists():
            time.sleep(0.005)
    elif mode == "hang-before-rename":
        def hook(tmp):
            (marks / "at-rename").touch()
            time.sleep(3600)
        st._before_rename_hook = hook

    def rows():
        for i in range(n):
            if delay:
                time.sleep(delay)
            yield {"instruction": f"{tag} {i}", "output": "ok"}
    v = st.DatasetStore(root).write(name, rows(), "instruction")
    print(v.version)
    """
)


def _writer(tmp_path, root, tag, n, delay, mode="plain"):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    return subprocess.Popen(
        [sys.executable, str(script), str(root), "d", tag, str(n), str(delay), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(ROOT),
    )


def _contend(tmp_path, store, mode):
    marks = store.root.parent / "marks"
    procs = [_writer(tmp_path, store.root, f"w{i}", 200, 0, mode) for i in range(2)]
    deadline = time.time() + 60
    while len(list(marks.glob("ready-*"))) < 2 and time.time() < deadline:
        time.sleep(0.01)
    (marks / "go").touch()
    outs = [p.communicate(timeout=120) for p in procs]
    return [p.returncode for p in procs], outs, list(marks.glob("overlap-*"))


def test_concurrent_writers_get_distinct_versions(tmp_path, store):
    codes, outs, overlaps = _contend(tmp_path, store, "contend")
    assert codes == [0, 0], outs
    assert overlaps == []  # never two writers inside the critical section at once
    assert sorted(int(o[0]) for o in outs) == [1, 2]
    for v in store.versions("d"):
        recs = list(v.records())
        tags = {r["instruction"].split()[0] for r in recs}
        assert len(recs) == 200 and len(tags) == 1  # each version holds exactly one writer's rows
        v.verify()


def test_contention_test_detects_a_missing_lock(tmp_path, store):
    """The same two writers with the lock replaced by a no-op do overlap: the test above
    really puts them in contention."""
    _codes, _outs, overlaps = _contend(tmp_path, store, "contend-nolock")
    assert overlaps


def _wait_for(pred, what: str, timeout: float = 60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_killed_writer_leaves_no_version(tmp_path, store):
    store.write("d", ROWS, "instruction")
    p = _writer(tmp_path, store.root, "slow", 100_000, 0.01)
    ds = store.root / "d"
    _wait_for(lambda: list(ds.glob(".tmp-*/records.jsonl")), "the writer to start writing")
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    assert [v.version for v in store.versions("d")] == [1]
    assert store.resolve("d").version == 1
    # The next writer sweeps the dead writer's temp directory and takes v2.
    assert store.write("d", ROWS[:1], "instruction").version == 2
    assert list(ds.glob(".tmp-*")) == []
    assert json.loads((ds / "v2" / "manifest.json").read_text())["count"] == 1


def test_writer_killed_after_manifest_before_rename_leaves_no_version(tmp_path, store):
    store.write("d", ROWS, "instruction")
    p = _writer(tmp_path, store.root, "late", 50, 0, "hang-before-rename")
    ds = store.root / "d"
    _wait_for(lambda: (store.root.parent / "marks" / "at-rename").exists(), "the rename point")
    assert list(ds.glob(".tmp-*/manifest.json"))  # the manifest was written
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    assert [v.version for v in store.versions("d")] == [1]
    # The lock died with the process: the next writer gets it, sweeps, and takes v2.
    assert store.write("d", ROWS[:1], "instruction").version == 2
    assert list(ds.glob(".tmp-*")) == []
