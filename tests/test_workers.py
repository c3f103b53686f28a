"""`make test` runs pytest-xdist workers, each pinned to its share of the CPUs
(tests/conftest.py): check that the pinning took."""

import os

import pytest


def test_an_xdist_worker_keeps_to_its_share_of_the_cpus():
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if count < 2 or (os.cpu_count() or 1) < count:
        pytest.skip("not under two or more pytest-xdist workers (make test runs them)")
    mine = os.sched_getaffinity(0)
    assert 1 <= len(mine) <= (os.cpu_count() or 1) // count, mine
    # torch, started after the pinning, counts only this worker's CPUs
    import torch

    assert torch.get_num_threads() <= len(mine)
