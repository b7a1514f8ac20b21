import pytest
import torch

from maskrcnn.config import Config, dump_yaml, from_dict, load_config, preset, to_dict
from maskrcnn.errors import UserError


def test_yaml_file_with_preset_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("preset: small\nmodel:\n  roi_heads: {batch_size_per_image: 32}\nsolver: {max_iter: 77}\n")
    config = load_config(path, ["solver.base_lr=0.005", "model.rpn.aspect_ratios=[1.0]", "model.input.min_size_train=96"])
    assert config.model.backbone.depth == 18  # from the preset
    assert config.model.roi_heads.batch_size_per_image == 32 and config.solver.max_iter == 77
    assert config.solver.base_lr == 0.005 and config.model.rpn.aspect_ratios == (1.0,)
    assert config.model.input.min_size_train == (96,)


def test_round_trip_through_dict_and_yaml():
    import yaml

    for name in ("r50_fpn", "r101_fpn", "r50_fpn_v2", "small", "d2_r50_fpn", "d2_r101_fpn", "d2_x101_32x8d_fpn"):
        config = preset(name)
        assert from_dict(to_dict(config)) == config
        assert from_dict(yaml.safe_load(dump_yaml(config))) == config
    resnext = preset("d2_x101_32x8d_fpn").model.backbone
    assert (resnext.depth, resnext.groups, resnext.width_per_group, resnext.stride_in_1x1) == (101, 32, 8, False)
    assert preset("d2_r50_fpn").model.backbone.stride_in_1x1  # MSRA ResNets: the stride in the first 1x1


@pytest.mark.parametrize(
    "name, bgr_std",
    [("d2_r50_fpn", (1.0, 1.0, 1.0)), ("d2_r101_fpn", (1.0, 1.0, 1.0)), ("d2_x101_32x8d_fpn", (57.375, 57.120, 58.395))],
)
def test_detectron2_presets_normalise_pixels_as_its_configs_do(name, bgr_std):
    """detectron2 feeds (BGR pixel in 0-255 - PIXEL_MEAN) / PIXEL_STD: mean [103.53, 116.28, 123.675] in every
    config, std 1 for the MSRA ResNets and the ImageNet std for the ResNeXt (mask_rcnn_X_101_32x8d_FPN_3x.yaml)."""
    model_input = preset(name).model.input
    rgb = torch.tensor([200.0, 30.0, 90.0])
    ours = (rgb / 255 - torch.tensor(model_input.pixel_mean)) / torch.tensor(model_input.pixel_std)
    theirs = (rgb.flip(0) - torch.tensor([103.53, 116.28, 123.675])) / torch.tensor(bgr_std)
    torch.testing.assert_close(ours, theirs.flip(0))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["solver.lr=0.1"], "unknown config key 'solver.lr'"),
        (["solver.max_iter=ten"], "solver.max_iter: expected an integer"),
        (["model.roi_heads.aligned=1"], "expected true or false"),
        (["model.roi_heads.box_reg_weights=[1, 2]"], "expected 4 values"),
        (["solver.base_lr"], "expected key=value"),
        (["solver.base_lr=.nan"], "finite"),
    ],
)
def test_bad_overrides_name_the_key(overrides, message):
    with pytest.raises(UserError, match=message):
        load_config("small", overrides)


def test_unknown_preset_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="neither a preset"):
        load_config(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(UserError, match="cannot parse config file"):
        load_config(bad)
    assert isinstance(load_config("r50_fpn"), Config)
