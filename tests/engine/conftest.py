import sys
from pathlib import Path

import pytest

from maskrcnn.data.shapes import generate_shapes

sys.path.insert(0, str(Path(__file__).parent))  # the `runs` helper module

@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shapes")
    return {
        "train": generate_shapes(root / "train", num_images=16, seed=0, image_size=64, max_instances=3),
        "val": generate_shapes(root / "val", num_images=6, seed=1, image_size=64, max_instances=3),
    }
