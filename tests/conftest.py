"""Session fixtures shared by every test area: one small synthetic world, built once."""

from __future__ import annotations

import os

import pytest

# Tests are small; keep torch from oversubscribing the 2 CI cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """A small synthetic world (24 train, 8 val images at 112 px), shared read-only by all tests."""
    from zss.synth.world import make_world

    root = tmp_path_factory.mktemp("world")
    make_world(root, n_train=24, n_val=8, size=112, seed=0)
    return root
