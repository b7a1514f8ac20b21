"""Shared test fixtures: where the real development data lives, synthetic shapes datasets, and CPU-friendly torch
settings. Helper modules beside this file (``runs``, ``torchvision_oracle``) are importable from every test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # shared helpers: `runs`, `torchvision_oracle`
# ../shared/data beside the checkout (read-only: tests never write there).
SHARED_DATA = Path(os.environ.get("MASKRCNN_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "README.md").is_file():
        pytest.fail(f"development data not found at {SHARED_DATA} (set MASKRCNN_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory) -> dict[str, Path]:
    """16 training and 6 validation images of 64 x 64 px synthetic shapes (COCO json paths)."""
    from maskrcnn.data.shapes import generate_shapes

    root = tmp_path_factory.mktemp("shapes")
    return {
        "train": generate_shapes(root / "train", num_images=16, seed=0, image_size=64, max_instances=3),
        "val": generate_shapes(root / "val", num_images=6, seed=1, image_size=64, max_instances=3),
    }


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield
