"""Predictions through the shared engines (vllm, openai, transformers): greedy by default,
the model's own chat template, batched, cached and resumable like datakit generation (the
request cache's key holds the model's content fingerprint, the prompt and every sampling
parameter, so one model's answers are never served as another's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from corekit.errors import ToolkitError

ITEM_FIELDS = ("references", "schema", "expected", "task", "tools")


def model_dir(ref: str, work: Path, adapters: str = "merge") -> tuple[str, dict[str, Any]]:
    """A servable model directory for ``ref`` and what it is: a model directory as is; a
    trainkit run directory or an adapter directory merged into its base once (cached under
    ``work`` by the adapter's content fingerprint), or with ``adapters="lora"`` its base
    model and, as ``info["lora"]``, one LoRA adapter on that base equal to the adapter and
    the ``from:`` stages under it (composed once, cached the same way)."""
    from corekit.adapters import final_dir
    from corekit.models import fingerprint, is_adapter

    p = Path(ref)
    info: dict[str, Any] = {"name": ref, "path": ref}
    if not p.exists():
        return ref, info  # a hub id or a served name: the engine checks it
    final = final_dir(p)
    adapter = None
    if is_adapter(p):
        adapter = p
    elif is_adapter(final):
        adapter = final
    elif (final / "config.json").is_file():
        return str(final), {**info, "path": str(final), "fingerprint": fingerprint(final)}
    if adapter is None:
        return ref, {**info, "fingerprint": fingerprint(p)}
    fp = fingerprint(adapter)
    if adapters == "lora":
        from corekit.adapters import compose_lora, lora_chain

        chain = lora_chain(adapter)
        if chain is not None:
            base_model, adapters_in_order = chain
            composed = work / f"{p.name}-{fp}-lora"
            if not is_adapter(composed):
                compose_lora(adapters_in_order, composed)
            return base_model, {
                **info,
                "path": base_model,
                "adapter": str(adapter),
                "lora": str(composed),
                "fingerprint": fingerprint(composed),
            }
    out = work / f"{p.name}-{fp}"
    if not (out / "config.json").is_file():
        from corekit.adapters import merge

        merge(str(p), str(out), force=True)
    return str(out), {
        **info,
        "path": str(out),
        "adapter": str(adapter),
        "fingerprint": fingerprint(out),
    }


def predict(
    engine: Any,
    items: list[dict[str, Any]],
    max_tokens: int = 128,
    temperature: float = 0.0,
    seed: int = 0,
    system_prompt: str | None = None,
    model_name: str | None = None,
    desc: str = "predict",
) -> list[dict[str, Any]]:
    """One prediction record per item (its id, the prompt, the output, and the item fields
    the metrics read)."""
    from corekit.engines import Request
    from datakit.records import prompt_messages

    requests = []
    for it in items:
        try:
            msgs = prompt_messages(it)
        except KeyError:
            raise ToolkitError(f"item {it.get('id')}: has no prompt or messages") from None
        if system_prompt and not any(m.get("role") == "system" for m in msgs):
            msgs = [{"role": "system", "content": system_prompt}, *msgs]
        requests.append(
            Request.chat(msgs, temperature=temperature, max_tokens=max_tokens, seed=seed)
        )
    results = engine.generate(requests, desc=desc)
    from .scoring import content_hash

    out = []
    for it, req, res in zip(items, requests, results, strict=True):
        c = res.completions[0] if res.ok else None
        row: dict[str, Any] = {
            "id": it["id"],
            "prompt": req.messages[-1]["content"],
            "output": c.text if c else "",
            **{k: it[k] for k in ITEM_FIELDS if k in it},
        }
        if (it.get("meta") or {}).get("regex"):
            row["regex"] = it["meta"]["regex"]
        # the hash of what was asked (every message, not only the last) and how it is scored
        row["item_hash"] = content_hash(
            {"messages": req.messages, **{k: it[k] for k in ITEM_FIELDS if k in it}}
        )
        # a failed request is recorded as such: scoring leaves it out of every metric
        row["finish_reason"] = c.finish_reason if c else "error"
        if not res.ok:
            row["error"] = res.error or "the request failed"
        row["meta"] = {"model": model_name}
        out.append(row)
    return out
