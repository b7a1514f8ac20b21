"""Shared test fixtures: where the real development data lives, and CPU-friendly torch settings."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # shared helpers: `torchvision_oracle`
# ../shared/data beside the checkout (read-only: tests never write there).
SHARED_DATA = Path(os.environ.get("MASKRCNN_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "README.md").is_file():
        pytest.fail(f"development data not found at {SHARED_DATA} (set MASKRCNN_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield
