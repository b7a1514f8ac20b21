from __future__ import annotations

import pytest

from maskrcnn.data.openimages.catalog import (
    OpenImagesClass,
    read_class_descriptions,
    read_segmentation_classes,
    resolve_classes,
)
from maskrcnn.errors import UserError

NAMES = {"/m/01yrx": "Cat", "/m/015qff": "Traffic light", "/m/0bt9lr": "Dog", "/m/07j7r": "Tree", "/m/0dog2": "Dog"}
WITH_MASKS = {"/m/01yrx", "/m/015qff", "/m/0bt9lr"}


def test_names_match_any_case_and_mids_keep_the_given_order():
    found = resolve_classes(["traffic LIGHT", "cat", "/m/0bt9lr", "Cat"], names=NAMES, segmentable=WITH_MASKS)
    assert found == [
        OpenImagesClass("/m/015qff", "Traffic light"),
        OpenImagesClass("/m/01yrx", "Cat"),
        OpenImagesClass("/m/0bt9lr", "Dog"),
    ]


def test_a_shared_display_name_resolves_to_the_mid_with_masks():
    # "Dog" names two MIDs here; only /m/0bt9lr has masks.
    assert resolve_classes(["dog"], names={"/m/0dog2": "Dog", **NAMES}, segmentable=WITH_MASKS)[0].mid == "/m/0bt9lr"


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UserError) as e:
        resolve_classes(["Catt"], names=NAMES, segmentable=WITH_MASKS)
    assert "'Catt'" in str(e.value) and "'Cat'" in str(e.value)
    with pytest.raises(UserError) as e:
        resolve_classes(["light"], names=NAMES, segmentable=WITH_MASKS)
    assert "'Traffic light'" in str(e.value)


def test_class_without_masks_is_an_error_that_says_so():
    with pytest.raises(UserError, match=r"'Tree' \(/m/07j7r\) has boxes but no instance masks"):
        resolve_classes(["tree"], names=NAMES, segmentable=WITH_MASKS)


def test_empty_class_list_is_an_error():
    with pytest.raises(UserError, match="no class given"):
        resolve_classes([" ", ""], names=NAMES, segmentable=WITH_MASKS)


def test_class_files_with_and_without_header(tmp_path):
    v5 = tmp_path / "v5.csv"
    v5.write_text('/m/01yrx,Cat\n/m/015qff,"Traffic light"\n', encoding="utf-8")
    v7 = tmp_path / "v7.csv"
    v7.write_text("LabelName,DisplayName\n/m/01yrx,Cat\n", encoding="utf-8")
    assert read_class_descriptions(v5) == {"/m/01yrx": "Cat", "/m/015qff": "Traffic light"}
    assert read_class_descriptions(v7) == {"/m/01yrx": "Cat"}
    seg = tmp_path / "classes-segmentation.txt"
    seg.write_text("/m/01yrx\n\n/m/015qff\n", encoding="utf-8")
    assert read_segmentation_classes(seg) == {"/m/01yrx", "/m/015qff"}
    bad = tmp_path / "bad.csv"
    bad.write_text("/m/01yrx\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.csv:1: expected MID,DisplayName"):
        read_class_descriptions(bad)
