"""detectron2 model-zoo files: read without running code, and renamed onto our model, shape for shape."""

from __future__ import annotations

import collections
import dataclasses
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1]))  # detectron2_weights

from detectron2_weights import detectron2_fpn_weights, write_model_zoo_pickle  # noqa: E402

from maskrcnn.checkpoint import load_checkpoint, load_state_into, read_file  # noqa: E402
from maskrcnn.config import BackboneConfig, ModelConfig  # noqa: E402
from maskrcnn.errors import UserError  # noqa: E402
from maskrcnn.model.build import build_model  # noqa: E402
from maskrcnn.zoo.detectron2 import backbone_shape, detectron2_to_ours, read_detectron2_file, resnet_depth  # noqa: E402
from maskrcnn.zoo.safe_pickle import load_numpy_pickle  # noqa: E402


class RunsAShellCommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def r50(tmp_path_factory) -> tuple[dict[str, np.ndarray], Path]:
    model = detectron2_fpn_weights(depth=50, seed=0)
    path = tmp_path_factory.mktemp("d2") / "model_final_random.pkl"
    write_model_zoo_pickle(path, model)
    return model, path


# ---- the restricted unpickler -----------------------------------------------------------------------------------------


def test_a_pickle_that_runs_a_command_is_refused_before_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model_final_evil.pkl"
    path.write_bytes(pickle.dumps({"model": {"w": np.zeros(2)}, "x": RunsAShellCommand(marker)}, protocol=2))
    with pytest.raises(UserError) as e:
        load_numpy_pickle(path)
    assert str(e.value) == (
        f"refused to read {path}: it asks for posix.system, and only numpy arrays and plain containers are allowed "
        f"in a weights pickle (nothing was run)"
    )
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload, asked",
    [
        (b"cbuiltins\neval\n(S'1+1'\ntR.", "builtins.eval"),  # protocol 0 text, no numpy at all
        (pickle.dumps(np.array([1, "a"], dtype=object), protocol=2), "an array of Python objects"),
        (pickle.dumps(collections.Counter(a=1), protocol=4), "collections.Counter"),
        (pickle.dumps(np.ma.masked_array([1.0]), protocol=2), "numpy.ma.core._mareconstruct"),
    ],
)
def test_anything_but_plain_arrays_is_refused(tmp_path, payload, asked):
    path = tmp_path / "x.pkl"
    path.write_bytes(payload)
    with pytest.raises(UserError, match=f"it asks for {asked}"):
        load_numpy_pickle(path)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_model_zoo_layout_pickle_reads_back_exactly(tmp_path, protocol):
    model = collections.OrderedDict(
        [("a.weight", np.arange(6, dtype=np.float32).reshape(2, 3)), ("b.running_var", np.ones(3, ">f8")),
         ("c.count", np.array([7], np.int64))]
    )  # fmt: skip
    path = tmp_path / "m.pkl"
    data = pickle.dumps({"model": model, "__author__": "Detectron2 Model Zoo", "matching_heuristics": True,
                         "scale": np.float32(0.5)}, protocol=protocol)  # fmt: skip
    path.write_bytes(data)
    obj = load_numpy_pickle(path)
    assert obj["__author__"] == "Detectron2 Model Zoo" and obj["matching_heuristics"] is True
    assert obj["scale"] == np.float32(0.5) and list(obj["model"]) == list(model)
    trusted = pickle.loads(data)  # what the unrestricted reader makes of this harmless file
    for key, value in model.items():
        assert obj["model"][key].dtype == trusted["model"][key].dtype and np.array_equal(obj["model"][key], value)


def test_a_truncated_or_foreign_file_is_named(tmp_path, r50):
    _, path = r50
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(UserError, match=f"cannot read weights file {cut}: not a complete pickle"):
        load_numpy_pickle(cut)
    torch_file = tmp_path / "t.pth"
    torch.save({"a": torch.zeros(1)}, torch_file)
    with pytest.raises(UserError, match=f"{torch_file} is a zip archive \\(a PyTorch checkpoint\\?\\), not a pickle"):
        read_detectron2_file(torch_file)


def test_other_layouts_are_named(tmp_path):
    blobs = tmp_path / "detectron1.pkl"
    blobs.write_bytes(pickle.dumps({"blobs": {"conv1_w": np.zeros(1)}}, protocol=2))
    with pytest.raises(UserError, match="holds Detectron \\(v1, Caffe2\\) blobs"):
        read_detectron2_file(blobs)
    no_model = tmp_path / "other.pkl"
    no_model.write_bytes(pickle.dumps({"weights": [1, 2]}, protocol=2))
    with pytest.raises(UserError, match="not a detectron2 model-zoo file: no 'model' dict of arrays \\(found: weights\\)"):
        read_detectron2_file(no_model)


# ---- detectron2 names -> ours ---------------------------------------------------------------------------------------


def our_model(depth: int):
    return build_model(ModelConfig(num_classes=80, backbone=BackboneConfig(depth=depth)))


def test_every_r50_parameter_maps_onto_our_model_with_its_values(r50):
    model, path = r50
    state = detectron2_to_ours(read_detectron2_file(path), path=path)
    ours = our_model(resnet_depth(model))
    expected = ours.state_dict()
    assert state.keys() == expected.keys()
    assert all(state[k].shape == expected[k].shape and state[k].dtype == torch.float32 for k in expected)
    load_state_into(ours, state, path=path)

    # spot checks of the renaming, one per rule (the stem's, whose channels are reversed: a test below)
    pairs = {
        "backbone.bottom_up.stem.conv1.norm.running_var": "backbone.bottom_up.bn1.running_var",
        "backbone.bottom_up.res2.0.shortcut.weight": "backbone.bottom_up.layer1.0.downsample.0.weight",
        "backbone.bottom_up.res3.0.shortcut.norm.bias": "backbone.bottom_up.layer2.0.downsample.1.bias",
        "backbone.bottom_up.res4.5.conv2.weight": "backbone.bottom_up.layer3.5.conv2.weight",
        "backbone.bottom_up.res5.2.conv3.norm.running_mean": "backbone.bottom_up.layer4.2.bn3.running_mean",
        "backbone.fpn_lateral2.weight": "backbone.fpn.lateral_convs.0.weight",
        "backbone.fpn_output5.bias": "backbone.fpn.output_convs.3.bias",
        "proposal_generator.rpn_head.anchor_deltas.weight": "rpn.head.anchor_deltas.weight",
        "roi_heads.box_head.fc2.weight": "roi_heads.box_head.fc2.weight",
        "roi_heads.mask_head.mask_fcn4.bias": "roi_heads.mask_head.convs.3.bias",
        "roi_heads.mask_head.deconv.weight": "roi_heads.mask_head.deconv.weight",
    }
    for theirs, name in pairs.items():
        assert torch.equal(state[name], torch.from_numpy(model[theirs])), theirs


def test_class_layers_put_background_first(r50):
    model, path = r50
    state = detectron2_to_ours(model, path=path)
    cls = torch.from_numpy(model["roi_heads.box_predictor.cls_score.weight"])  # (81, 1024), background last
    assert torch.equal(state["roi_heads.box_predictor.cls_score.weight"], torch.cat([cls[80:], cls[:80]]))
    deltas = state["roi_heads.box_predictor.bbox_pred.weight"]  # (324, 1024): class k at rows 4k..4k+3
    assert torch.count_nonzero(deltas[:4]) == 0
    assert torch.equal(deltas[4 * 7 : 4 * 8], torch.from_numpy(model["roi_heads.box_predictor.bbox_pred.weight"][4 * 6 : 4 * 7]))
    masks = state["roi_heads.mask_head.predictor.bias"]
    assert masks[0] == 0 and torch.equal(masks[1:], torch.from_numpy(model["roi_heads.mask_head.predictor.bias"]))
    # the probabilities of the 80 classes are the same either way
    x = torch.randn(5, 1024)
    theirs = torch.softmax(x @ cls.T + torch.from_numpy(model["roi_heads.box_predictor.cls_score.bias"]), 1)[:, :80]
    ours = torch.softmax(x @ state["roi_heads.box_predictor.cls_score.weight"].T
                         + state["roi_heads.box_predictor.cls_score.bias"], 1)[:, 1:]  # fmt: skip
    torch.testing.assert_close(ours, theirs)


def test_r101_maps_too():
    model = detectron2_fpn_weights(depth=101, seed=1)
    assert resnet_depth(model) == 101
    state = detectron2_to_ours(model)
    expected = our_model(101).state_dict()
    assert state.keys() == expected.keys() and all(state[k].shape == expected[k].shape for k in expected)


def test_saved_buffers_are_dropped_and_strangers_named(r50):
    model, _ = r50
    extra = {**model, "pixel_mean": np.zeros((3, 1, 1)), "proposal_generator.anchor_generator.cell_anchors.0": np.zeros((3, 4))}
    assert detectron2_to_ours(extra).keys() == detectron2_to_ours(model).keys()
    for stranger in ("backbone.bottom_up.res2.0.conv1.norm.num_batches", "roi_heads.keypoint_head.conv_fcn1.weight"):
        with pytest.raises(UserError, match=f"not those of a detectron2 R50/R101-FPN Mask R-CNN: {stranger}"):
            detectron2_to_ours({**model, stranger: np.zeros(1)}, path="f.pkl")
    agnostic = {**model, "roi_heads.box_predictor.bbox_pred.weight": np.zeros((4, 1024), np.float32),
                "roi_heads.box_predictor.bbox_pred.bias": np.zeros(4, np.float32)}  # fmt: skip
    with pytest.raises(UserError, match="bbox_pred.weight has 4 rows; 80 classes need 320"):
        detectron2_to_ours(agnostic, path="f.pkl")


def test_a_model_zoo_file_loads_with_detectron2s_config_and_rgb_stem(r50):
    model, path = r50
    loaded = load_checkpoint(path)
    assert loaded.source == "detectron2" and loaded.config.model.backbone.depth == 50
    assert loaded.config.model.input.pixel_std == (1 / 255, 1 / 255, 1 / 255)
    stem = torch.from_numpy(model["backbone.bottom_up.stem.conv1.weight"])  # (64, 3, 7, 7) over B, G, R
    assert torch.equal(loaded.state_dict["backbone.bottom_up.conv1.weight"], stem[:, [2, 1, 0]])
    with pytest.raises(UserError, match=f"{path} is a detectron2 model-zoo pickle, not a PyTorch checkpoint"):
        read_file(path)


def test_resnext_shape_is_read_from_the_grouped_convolutions():
    grouped = {"backbone.bottom_up.res2.0.conv2.weight": np.zeros((256, 8, 3, 3), np.float32)}
    grouped.update({f"backbone.bottom_up.res4.{b}.conv1.weight": np.zeros(1) for b in range(23)})
    assert backbone_shape(grouped) == (101, 32, 8)


def test_a_grouped_resnext_file_loads_and_computes_what_its_block_diagonal_dense_form_does(r50, tmp_path):
    """ResNeXt-50 4x16d in detectron2's layout (an R50 file whose 3x3 convolutions are grouped: 4 groups of 16
    channels at res2, so every other shape stays R50's) loads with groups read from the file, and its backbone
    computes what a plain ResNet-50 with the same weights spread block-diagonally computes."""
    model, _ = r50
    groups = 4
    grouped = {k: (v[:, : v.shape[1] // groups].copy() if k.endswith(".conv2.weight") else v) for k, v in model.items()}
    path = tmp_path / "model_final_x50.pkl"
    write_model_zoo_pickle(path, grouped)
    loaded = load_checkpoint(path)
    bb = loaded.config.model.backbone
    assert (bb.depth, bb.groups, bb.width_per_group, bb.stride_in_1x1) == (50, 4, 16, False)
    small_input = dataclasses.replace(loaded.config.model.input, min_size_test=64, max_size_test=128)
    resnext = build_model(dataclasses.replace(loaded.config.model, input=small_input)).eval()
    load_state_into(resnext, loaded.state_dict, path=path)
    assert resnext.backbone.bottom_up.layer3[0].conv2.groups == 4

    dense_state = dict(loaded.state_dict)
    for key, w in loaded.state_dict.items():
        if key.endswith(".conv2.weight"):  # (C, C / g, 3, 3) -> (C, C, 3, 3), zero between groups
            c, per_group = w.shape[:2]
            dense = torch.zeros(c, c, 3, 3)
            for g in range(groups):
                rows = slice(g * per_group, (g + 1) * per_group)
                dense[rows, rows] = w[rows]
            dense_state[key] = dense
    plain_config = ModelConfig(
        num_classes=80, backbone=BackboneConfig(depth=50, norm="frozen_bn", stride_in_1x1=False, frozen_bn_eps=1e-5)
    )
    plain = build_model(plain_config).eval()
    load_state_into(plain, dense_state, path=path)
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0)) * 50
    with torch.no_grad():
        for a, b in zip(resnext.backbone(x), plain.backbone(x)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        out = resnext([torch.randint(0, 256, (3, 60, 90), dtype=torch.uint8)])[0]
    assert out["masks"].shape[1:] == (60, 90)
