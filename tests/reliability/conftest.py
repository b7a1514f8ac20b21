"""Fault injection: training runs that are killed, signalled or fed bad files, and downloads from hostile servers.
Helpers live in ``faults.py`` (training) and ``hostile.py`` (servers)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # faults, hostile

from faults import RUN, one_thread, train_job  # noqa: E402

from maskrcnn.engine.train import train  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="session")
def reference_run(shapes_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    with one_thread():
        train(train_job(shapes_data, out, *RUN))
    return out
