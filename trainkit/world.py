"""The world a stage trains in, checked at its start: how many ranks, on which hosts and
devices, and that every rank reads the same dataset versions (a node with its own,
older data_root would train on other data without a word). One line says so; run.json
keeps it."""

from __future__ import annotations

import socket
from typing import Any

from corekit.errors import ToolkitError


def _mine(refs: list[dict[str, Any]], device: str) -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "device": device,
        "data": [f"{r['ref']}:{r['sha256']}" for r in refs],
    }


def gather(refs: list[dict[str, Any]], device: str) -> list[dict[str, Any]]:
    """Every rank's host, device and dataset versions, in rank order (all_gather over the
    process group the trainer set up; this process alone without one)."""
    import torch.distributed as dist

    mine = _mine(refs, device)
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [mine]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, mine)
    return out


def summary(stage: str, ranks: list[dict[str, Any]], backend: str | None) -> dict[str, Any]:
    """The world as run.json records it, and its line; ranks that read other dataset
    versions than rank 0 are an error naming them."""
    first = ranks[0]["data"]
    other = [n for n, r in enumerate(ranks) if r["data"] != first]
    if other:
        theirs = ", ".join(f"rank {n} reads {' + '.join(ranks[n]['data'])}" for n in other)
        raise ToolkitError(
            f"train.stages.{stage}: the ranks read different dataset versions: rank 0 reads "
            f"{' + '.join(first)}, {theirs} (give every node the same data_root, or copy "
            "the versions)"
        )
    hosts = sorted({r["host"] for r in ranks})
    devices = sorted({r["device"] for r in ranks})
    data = ", ".join(d.split(":")[0] for d in first)
    n = len(ranks)
    line = (
        f"world: {n} rank{'s' if n > 1 else ''}"
        + (f" ({backend})" if backend and n > 1 else "")
        + f" on {len(hosts)} host{'s' if len(hosts) > 1 else ''}, devices {', '.join(devices)};"
        + f" {'every rank reads' if n > 1 else 'reads'} {data}"
    )
    return {"ranks": n, "hosts": hosts, "devices": devices, "line": line}


def check_world(stage: str, refs: list[dict[str, Any]], args: Any) -> dict[str, Any]:
    """The world of a trainer with TrainingArguments ``args``, checked (see summary)."""
    ranks = gather(refs, str(args.device))
    return summary(stage, ranks, args.ddp_backend if len(ranks) > 1 else None)
