"""trainkit's world check: ranks, hosts, devices, and the same dataset versions on every rank
(the gather across ranks runs in tests/trainkit/integration/test_train_ddp.py)."""

from __future__ import annotations

import pytest

from corekit.errors import ToolkitError
from trainkit.world import summary

REFS = ["chat@v2:ab12", "safety@v1:cd34"]


def _rank(host: str = "node-a", device: str = "cpu", data=REFS) -> dict:
    return {"host": host, "device": device, "data": list(data)}


def test_one_process_is_one_line():
    world = summary("sft", [_rank()], None)
    assert world["line"] == "world: 1 rank on 1 host, devices cpu; reads chat@v2, safety@v1"
    assert world["ranks"] == 1 and world["hosts"] == ["node-a"]


def test_ranks_on_two_hosts_that_read_the_same_versions():
    ranks = [_rank("a", "cuda:0"), _rank("a", "cuda:1"), _rank("b", "cuda:0"), _rank("b", "cuda:1")]
    world = summary("sft", ranks, "nccl")
    assert world["line"] == (
        "world: 4 ranks (nccl) on 2 hosts, devices cuda:0, cuda:1; every rank reads chat@v2, "
        "safety@v1"
    )


def test_a_rank_that_reads_another_version_stops_the_stage():
    ranks = [_rank("a"), _rank("b", data=["chat@v1:ff00", "safety@v1:cd34"])]
    with pytest.raises(ToolkitError) as e:
        summary("sft", ranks, "gloo")
    msg = str(e.value)
    assert msg.startswith("train.stages.sft: the ranks read different dataset versions")
    assert "rank 1 reads chat@v1:ff00" in msg and "\n" not in msg
    # the same name at another content hash is another version too
    ranks = [_rank("a"), _rank("b", data=["chat@v2:0000", "safety@v1:cd34"])]
    with pytest.raises(ToolkitError):
        summary("sft", ranks, "gloo")
