"""The registry of published weights, and how ``--weights VALUE`` becomes a file."""

from __future__ import annotations

import re

import pytest
from zoo_files import DATA, PATH, entry_for

from maskrcnn.errors import UserError
from maskrcnn.zoo import ENTRIES, find_entry, resolve_weights, weights_home


def test_names_are_unique_and_every_file_is_checked():
    names = [e.name for e in ENTRIES]
    assert len(set(names)) == len(names) and all(n == n.lower() for n in names)
    for entry in ENTRIES:
        assert entry.url.startswith("https://") and entry.kind in ("detector", "backbone")
        assert entry.sha256 or entry.sha256_prefix or entry.md5_prefix, entry.name
        assert (entry.sha256 is None) == (entry.sha256_source is None), entry.name
        assert (entry.box_ap is None) == (entry.kind == "backbone"), entry.name


def test_recorded_prefixes_are_the_ones_in_the_published_file_names():
    """torchvision names carry the SHA-256 prefix, detectron2 names the MD5 prefix: the table must agree."""
    for entry in ENTRIES:
        torchvision = re.search(r"-([0-9a-f]{8,})\.pth$", entry.file_name)
        detectron2 = re.fullmatch(r"model_final_([0-9a-f]{6})\.pkl", entry.file_name)
        assert (torchvision or detectron2) is not None, entry.file_name
        if torchvision:
            assert entry.sha256_prefix == torchvision[1] and entry.md5_prefix is None
        else:
            assert entry.md5_prefix == detectron2[1] and entry.sha256_prefix is None
        if entry.sha256 and entry.sha256_prefix:
            assert entry.sha256.startswith(entry.sha256_prefix)


def test_what_can_be_used_before_the_new_architectures_land():
    usable = {e.name for e in ENTRIES if not e.unsupported}
    assert usable == {"coco-r50-fpn", "imagenet-r50", "imagenet-r101", "d2-r50-fpn-1x", "d2-r50-fpn-3x",
                      "d2-r101-fpn-3x", "d2-x101-32x8d-fpn-3x"}  # fmt: skip
    assert find_entry("COCO-R50-FPN").url.endswith("maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth")
    assert find_entry("d2-r101-fpn-1x") is None  # detectron2 published R101-FPN and X101-FPN at 3x only


def test_a_file_is_taken_as_it_is_even_when_named_like_weights(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "coco-r50-fpn").write_bytes(b"x")
    assert resolve_weights("coco-r50-fpn", purpose="predict").as_posix() == "coco-r50-fpn"  # the file, as given
    assert resolve_weights("runs/x/best.pt", purpose="predict").as_posix() == "runs/x/best.pt"  # the loader says it is missing


def test_a_mistyped_name_gets_a_suggestion():
    with pytest.raises(UserError) as e:
        resolve_weights("coco-r50-fpm", purpose="predict")
    assert "did you mean coco-r50-fpn?" in str(e.value) and "d2-x101-32x8d-fpn-3x" in str(e.value)


@pytest.mark.parametrize("name", [e.name for e in ENTRIES if e.unsupported])
def test_entries_not_supported_yet_fail_before_any_download(name, home):
    with pytest.raises(UserError, match=f"weights {name} .* are listed but cannot be used yet: .*not yet supported"):
        resolve_weights(name, purpose="predict", home=home)
    assert not home.exists()


def test_a_backbone_starts_training_but_does_not_predict(server, http, home):
    backbone = entry_for(server.url + PATH, name="imagenet-test", kind="backbone", box_ap=None, mask_ap=None)
    with pytest.raises(UserError, match="ImageNet R50-FPN backbone, not a detector: start training from them"):
        resolve_weights("imagenet-test", purpose="predict", home=home, http=http, entries=(backbone,))
    path = resolve_weights("imagenet-test", purpose="train", home=home, http=http, entries=(backbone,))
    assert path.read_bytes() == DATA


def test_names_download_into_maskrcnn_home(server, http, tmp_path, monkeypatch):
    monkeypatch.setenv("MASKRCNN_HOME", str(tmp_path / "zoo"))
    assert weights_home() == tmp_path / "zoo"
    path = resolve_weights("Test-Weights", purpose="predict", http=http, entries=(entry_for(server.url + PATH),))
    assert path == tmp_path / "zoo" / "weights" / "w-1234.pth"
    monkeypatch.delenv("MASKRCNN_HOME")
    assert str(weights_home()).endswith(".cache/maskrcnn")
