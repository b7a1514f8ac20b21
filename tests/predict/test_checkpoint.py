import pickle

import numpy as np
import pytest
import torch

import maskrcnn
from maskrcnn.checkpoint import load_checkpoint, load_imagenet_backbone, save_checkpoint
from maskrcnn.config import preset
from maskrcnn.errors import UserError
from maskrcnn.model.build import build_model
from maskrcnn.model.inference import prepare_for_inference


def test_our_format_round_trip_gives_the_same_predictions(tiny_checkpoint, tmp_path):
    loaded = load_checkpoint(tiny_checkpoint)
    assert loaded.source == "maskrcnn"
    assert loaded.class_names == ["square", "circle", "triangle"] and loaded.category_ids == [1, 2, 5]
    assert loaded.config == preset("small")

    model = build_model(loaded.config.model).eval()
    model.load_state_dict(loaded.state_dict)
    # What the Predictor runs; tests/model/test_inference.py compares it with the unconverted model.
    model = prepare_for_inference(model)
    image = (np.random.default_rng(0).random((100, 140, 3)) * 255).astype(np.uint8)
    with torch.no_grad():
        direct = model([torch.from_numpy(image).permute(2, 0, 1)])[0]
    predictor = maskrcnn.load(tiny_checkpoint)
    got = predictor.predict(image, score_threshold=0.0)[0]
    assert len(got) == len(direct["scores"]) > 0
    np.testing.assert_array_equal(got.boxes, direct["boxes"].numpy())
    np.testing.assert_array_equal(got.masks, direct["masks"].numpy())
    assert set(got.category_ids.tolist()) <= {1, 2, 5}
    assert got.class_names == [["square", "circle", "triangle"][k - 1] for k in got.labels]


def test_checkpoint_file_is_plain_data(tiny_checkpoint):
    # weights_only=True refuses arbitrary pickled objects: ours must load under it
    obj = torch.load(tiny_checkpoint, weights_only=True)
    assert obj["format"] == "maskrcnn" and obj["version"] == 1


def test_save_is_atomic_on_failure(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"previous contents")
    model = build_model(preset("small").model)
    with pytest.raises(Exception):
        save_checkpoint(path, model=model, config=preset("small"), class_names=["a"], category_ids=[1],
                        extra={"bad": lambda: 0})  # torch.save cannot pickle a lambda: fails half-way
    assert path.read_bytes() == b"previous contents"
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "cannot read weights file"),
        (b"this is not a checkpoint", "cannot read weights file"),
        (b"PK\x03\x04truncated zip", "cannot read weights file"),
    ],
)
def test_corrupt_files_give_one_clear_error(tmp_path, content, message):
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_unsafe_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pth"

    class Payload:
        def __reduce__(self):
            return (print, ("side effect",))

    path.write_bytes(pickle.dumps(Payload(), protocol=2))
    with pytest.raises(UserError, match="cannot read weights file"):
        load_checkpoint(path)


def test_file_of_neither_format_lists_what_it_holds(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(2), "decoder.bias": torch.zeros(1)}, path)
    with pytest.raises(UserError, match="neither a maskrcnn checkpoint nor a torchvision") as info:
        load_checkpoint(path)
    assert "encoder.weight" in str(info.value)


def test_wrong_weights_list_missing_and_unexpected(tiny_checkpoint, tmp_path):
    obj = torch.load(tiny_checkpoint, weights_only=True)
    del obj["model"]["rpn.head.conv.weight"]
    obj["model"]["extra.layer.weight"] = torch.zeros(1)
    obj["model"]["roi_heads.box_predictor.cls_score.bias"] = torch.zeros(7)
    path = tmp_path / "edited.pt"
    torch.save(obj, path)
    with pytest.raises(UserError) as info:
        maskrcnn.load(path)
    text = str(info.value)
    assert "missing: rpn.head.conv.weight" in text
    assert "unexpected: extra.layer.weight" in text
    assert "roi_heads.box_predictor.cls_score.bias (7,) vs (4,)" in text


def test_missing_file_and_bad_device(tmp_path, tiny_checkpoint):
    with pytest.raises(UserError, match="weights file not found"):
        maskrcnn.load(tmp_path / "nope.pth")
    with pytest.raises(UserError, match="unknown device 'tpu0'|unsupported device"):
        maskrcnn.load(tiny_checkpoint, device="tpu0")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            maskrcnn.load(tiny_checkpoint, device="cuda")


def test_imagenet_resnet_file_loads_into_the_backbone(tmp_path):
    from torchvision.models import resnet50

    torch.manual_seed(3)
    reference = resnet50(weights=None)
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save(reference.state_dict(), path)
    model = build_model(preset("r50_fpn").model)
    load_imagenet_backbone(model, path)
    ours = model.backbone.bottom_up.state_dict()
    assert torch.equal(ours["layer3.5.conv2.weight"], reference.state_dict()["layer3.5.conv2.weight"])
    assert torch.equal(ours["bn1.running_var"], reference.state_dict()["bn1.running_var"])

    small = build_model(preset("small").model)
    with pytest.raises(UserError, match="do not fit a ResNet"):
        load_imagenet_backbone(small, path)
