"""``maskrcnn convert --format openimages``: the same dataset from files already on disk."""

from __future__ import annotations

import json

import pytest
from oi_fetch import fetch
from oi_mirror import annotation_key, expected_instances, make_local_copy

from maskrcnn.cli import main
from maskrcnn.data.openimages.layout import safe_image_id
from maskrcnn.data.openimages.local import convert_openimages
from maskrcnn.errors import UserError


def _instances(dataset: dict) -> dict:
    images = {img["id"]: img for img in dataset["images"]}
    return {
        annotation_key(dataset, a): (
            images[a["image_id"]]["file_name"], images[a["image_id"]]["width"], images[a["image_id"]]["height"],
            a["category_id"], a["segmentation"], a["bbox"], a["area"], a["iscrowd"],
        )
        for a in dataset["annotations"]
    }  # fmt: skip


def _labels(dataset: dict) -> dict:
    keys = ("pos_category_ids", "neg_category_ids", "not_exhaustive_category_ids")
    return {img["open_images_id"]: tuple(tuple(img[k]) for k in keys) for img in dataset["images"]}


def test_local_files_convert_to_what_download_writes(mirror, server, tmp_path, capsys):
    downloaded = tmp_path / "downloaded"
    fetch(server, downloaded)  # every Cat and Traffic light image
    # Half the shards extracted into PNGs, the others still zipped.
    local = make_local_copy(mirror, tmp_path / "local", extracted_shards="02468ace")
    out = tmp_path / "converted"
    code = main(["convert", "--format", "openimages", str(local), "--output", str(out),
                 "--classes", "cat,Traffic light"])  # fmt: skip
    assert code == 0
    assert "instances, 2 categories" in capsys.readouterr().out
    want = json.loads((downloaded / "annotations.json").read_text())
    got = json.loads((out / "annotations.json").read_text())
    assert got["categories"] == want["categories"]
    assert _instances(got) == _instances(want) and len(got["annotations"]) > 10
    assert _labels(got) == _labels(want)
    assert any(a.get("isbbox") for a in got["annotations"]) and any(a["iscrowd"] for a in got["annotations"])
    for img in got["images"]:
        assert (out / img["file_name"]).read_bytes() == (downloaded / img["file_name"]).read_bytes()


def test_local_damaged_files_are_skipped_and_listed(bad_mirror, tmp_path):
    local = make_local_copy(bad_mirror, tmp_path / "local", extracted_shards="13579bdf")
    damaged_images = {i.image_id for i in bad_mirror.instances if i.problem}
    victim = next(i for i in bad_mirror.instances_of({"/m/01yrx"}) if i.image_id not in damaged_images)
    (local / "validation" / f"{victim.image_id}.jpg").unlink()
    report = convert_openimages(local, tmp_path / "out", classes=["Cat"], split=None)
    dataset = json.loads((tmp_path / "out" / "annotations.json").read_text())
    got = {annotation_key(dataset, a) for a in dataset["annotations"]}
    chosen = {i.image_id for i in bad_mirror.instances_of({"/m/01yrx"}) if i.mask_path and safe_image_id(i.image_id)}
    good = set(expected_instances(bad_mirror, {"/m/01yrx": "/m/01yrx"}, chosen - {victim.image_id}))
    assert got == good
    text = "\n".join(report.skipped)
    assert f"image {victim.image_id}.jpg: not found" in text
    for problem in ("corrupt-png", "corrupt-member", "missing-member", "empty"):
        inst = next(i for i in bad_mirror.instances if i.problem == problem)
        assert f"mask {inst.mask_path}: " in text
    assert report.annotations == len(good)


def test_local_copy_without_boxes_gives_the_masks_only(mirror, tmp_path):
    local = make_local_copy(mirror, tmp_path / "local", extracted_shards="0123", boxes=False)
    convert_openimages(local, tmp_path / "out", classes=["/m/01yrx"], split=None)
    dataset = json.loads((tmp_path / "out" / "annotations.json").read_text())
    chosen = {i.image_id for i in mirror.instances_of({"/m/01yrx"}) if i.mask_path}
    masks = {k for k in expected_instances(mirror, {"/m/01yrx": "/m/01yrx"}, chosen) if k[0] == "mask"}
    assert {annotation_key(dataset, a) for a in dataset["annotations"]} == masks
    assert all(img["neg_category_ids"] == [] for img in dataset["images"])  # no labels file: nothing verified


def test_local_errors(mirror, tmp_path):
    with pytest.raises(UserError, match="no <split>-annotations-object-segmentation.csv"):
        convert_openimages(tmp_path, tmp_path / "out", classes=None, split=None)
    local = make_local_copy(mirror, tmp_path / "local", extracted_shards="")
    with pytest.raises(UserError, match="no train-annotations-object-segmentation.csv"):
        convert_openimages(local, tmp_path / "out", classes=None, split="train")
    with pytest.raises(UserError, match="did you mean 'Cat'"):
        convert_openimages(local, tmp_path / "out", classes=["Catt"], split=None)
    # No class list: every class of the CSV, ordered by name.
    report = convert_openimages(local, tmp_path / "all", classes=None, split="validation")
    names = [c["name"] for c in json.loads((tmp_path / "all" / "annotations.json").read_text())["categories"]]
    assert names == ["Car", "Cat", "Dog", "Person", "Traffic light"] and report.categories == 5
