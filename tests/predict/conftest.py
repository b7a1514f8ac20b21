import dataclasses
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "model"))  # the `tiny` helper module

from maskrcnn.checkpoint import save_checkpoint  # noqa: E402
from maskrcnn.config import preset  # noqa: E402
from maskrcnn.model.build import build_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised small model saved in our format; with score threshold 0 it detects plenty."""
    torch.manual_seed(0)
    config = preset("small")
    model = build_model(config.model).eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model=model, config=config, class_names=["square", "circle", "triangle"],
                    category_ids=[1, 2, 5])
    return path


@pytest.fixture
def small_config():
    return dataclasses.replace(preset("small"))
