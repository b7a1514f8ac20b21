"""Fixtures for the Open Images tests: a generated mirror in the real layout, served over loopback HTTP."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the oi_* helper modules

from oi_fetch import REFERENCE, fetch  # noqa: E402
from oi_mirror import Mirror, make_mirror  # noqa: E402
from oi_server import MirrorServer  # noqa: E402


@pytest.fixture(scope="session")
def mirror(tmp_path_factory) -> Mirror:
    """36 images, every shard used, no damaged files."""
    return make_mirror(tmp_path_factory.mktemp("oi-mirror"), seed=0)


@pytest.fixture(scope="session")
def bad_mirror(tmp_path_factory) -> Mirror:
    """Like ``mirror`` plus unusable instances and unsafe names (see oi_mirror)."""
    return make_mirror(tmp_path_factory.mktemp("oi-bad-mirror"), seed=1, n_images=20, problems=True)


@pytest.fixture
def server(mirror):
    with MirrorServer(mirror.root) as s:
        yield s


@pytest.fixture(scope="session")
def reference(mirror, tmp_path_factory) -> bytes:
    """annotations.json of a clean run with the REFERENCE settings."""
    out = tmp_path_factory.mktemp("oi-reference")
    with MirrorServer(mirror.root) as server:
        report = fetch(server, out, **REFERENCE)
    assert report.complete
    return (out / "annotations.json").read_bytes()
