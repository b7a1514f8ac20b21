"""Fixtures for the model-zoo tests: a loopback server holding a fake published file, a fast HTTP client, a cache."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # weights_server, zoo_files

from weights_server import WeightsServer  # noqa: E402
from zoo_files import DATA, FAST, PATH  # noqa: E402

from maskrcnn.http import HttpClient  # noqa: E402


@pytest.fixture
def server():
    with WeightsServer({PATH: DATA}) as s:
        yield s


@pytest.fixture
def http() -> HttpClient:
    return HttpClient(policy=FAST)


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "home"
