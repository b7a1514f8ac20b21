"""``--weights NAME`` end to end: the CLI commands and ``maskrcnn.load`` download a registry entry from a loopback
server once, then use the cached file; ``maskrcnn weights list`` shows the registry."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from weights_server import WeightsServer
from zoo_files import FAST, entry_for

sys.path.insert(0, str(Path(__file__).parents[1] / "model"))  # tiny
sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))  # runs

from runs import TINY_OVERRIDES  # noqa: E402
from tiny import tiny_model  # noqa: E402

import maskrcnn  # noqa: E402
from maskrcnn.checkpoint import save_checkpoint  # noqa: E402
from maskrcnn.cli import main  # noqa: E402
from maskrcnn.config import preset  # noqa: E402
from maskrcnn.http import HttpClient  # noqa: E402
from maskrcnn.data.shapes import generate_shapes  # noqa: E402
from maskrcnn.zoo import registry, resolve_weights  # noqa: E402


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    save_checkpoint(path, model=tiny_model(), config=preset("small"), class_names=["square", "circle", "triangle"],
                    category_ids=[1, 2, 3])  # fmt: skip
    return path.read_bytes()


@pytest.fixture
def zoo(tiny_file, tmp_path, monkeypatch):
    """The registry holds one entry, "tiny-zoo", served on loopback; the cache is under tmp_path."""
    monkeypatch.setenv("MASKRCNN_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("maskrcnn.zoo.cache.HttpClient", lambda **_: HttpClient(policy=FAST))
    with WeightsServer({"zoo/tiny-5f3c.pt": tiny_file}) as server:
        entry = entry_for(server.url + "zoo/tiny-5f3c.pt", tiny_file, name="tiny-zoo")
        monkeypatch.setattr(registry, "ENTRIES", (*registry.ENTRIES, entry))
        yield server, tmp_path / "home" / "weights" / "tiny-5f3c.pt"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("shapes"), num_images=4, seed=0, image_size=64, max_instances=2)


def test_predict_and_load_download_a_name_once(zoo, tmp_path, capsys):
    server, cached = zoo
    image = tmp_path / "a.png"
    Image.fromarray((np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8)).save(image)
    out = tmp_path / "out"
    assert main(["predict", "--weights", "tiny-zoo", "--output", str(out), "--score-threshold", "0", str(image)]) == 0
    assert cached.is_file() and json.loads((out / "predictions.json").read_text())
    err = capsys.readouterr().err
    assert "downloaded tiny-zoo (" in err and f"MiB, checked) -> {cached}" in err
    requests = len(server.ranges_asked)
    assert maskrcnn.load("tiny-zoo").class_names == ["square", "circle", "triangle"]
    assert len(server.ranges_asked) == requests  # the second use reads the cache


def test_evaluate_and_train_take_names(zoo, shapes, tmp_path, capsys):
    _, cached = zoo
    assert main(["evaluate", "--weights", "tiny-zoo", "--data", str(shapes), "--output", str(tmp_path / "ev"),
                 "--device", "cpu", "--no-report"]) == 0  # fmt: skip
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert main(["train", "--weights", "tiny-zoo", "--data", str(shapes), "--output", str(tmp_path / "run"),
                 *TINY_OVERRIDES, "solver.max_iter=1"]) == 0  # fmt: skip
    assert f"starting from maskrcnn weights {cached}" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["predict", "evaluate", "export", "train"])
def test_every_command_refuses_names_not_supported_yet(command, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MASKRCNN_HOME", str(tmp_path / "home"))
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}))
    args = {
        "predict": ["predict", "--output", str(tmp_path / "o"), str(image)],
        "evaluate": ["evaluate", "--data", str(gt), "--output", str(tmp_path / "o")],
        "export": ["export", "--output", str(tmp_path / "m.onnx")],
        "train": ["train", "--data", str(gt), "--output", str(tmp_path / "o")],
    }[command]
    assert main([*args, "--weights", "coco-r50-fpn-v2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: weights coco-r50-fpn-v2 (torchvision (maskrcnn_resnet50_fpn_v2, COCO_V1)) are "
                          "listed but cannot be used yet: torchvision's v2 architecture") and err.count("\n") == 1
    assert not (tmp_path / "home").exists()


def test_weights_list_shows_the_registry(zoo, capsys):
    assert main(["weights", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "ARCHITECTURE", "SOURCE", "BOX", "AP", "MASK", "AP", "SIZE", "STATUS"]
    rows = {line.split()[0]: line for line in lines[1:] if line and not line.startswith("AP:")}
    assert set(rows) == {e.name for e in registry.ENTRIES}
    assert rows["coco-r50-fpn"].split()[-8:] == ["37.9", "34.6", "170", "MB", "downloads", "on", "first", "use"]
    assert rows["imagenet-r101"].endswith("171 MB  downloads on first use, for train only")
    assert rows["d2-x101-32x8d-fpn-3x"].endswith("44.3     39.5  unpublished  downloads on first use")
    assert rows["coco-r50-fpn-v2"].endswith("not yet supported")
    assert rows["tiny-zoo"].endswith("downloads on first use")
    resolve_weights("tiny-zoo", purpose="predict")
    main(["weights", "list"])
    assert [line for line in capsys.readouterr().out.splitlines() if line.startswith("tiny-zoo")][0].endswith(
        "  downloaded"
    )
