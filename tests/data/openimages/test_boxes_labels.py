"""Boxes, group-of regions, verified labels and negative images in a download; the box CSV's stream; bad input."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil

import pytest
from oi_fetch import FAST_RETRY, REFERENCE, fetch
from oi_mirror import ANIMAL, CAR, CAT, HIERARCHY, LIGHT, LIMOUSINE, box_bbox
from oi_server import MirrorServer

import maskrcnn.data.openimages.box_csv as box_csv_module
import maskrcnn.data.openimages.download as download_module
from maskrcnn.cli import main
from maskrcnn.data.openimages.box_csv import BoxRow, LineFilter
from maskrcnn.data.openimages.csv_filter import MaskRow
from maskrcnn.data.openimages.download import download_openimages
from maskrcnn.data.openimages.instances import match_masks_to_boxes

BOX_CSV = "/ann/v5/validation-annotations-bbox.csv"


def _ancestors(node: dict, above: tuple = (), out: dict | None = None) -> dict[str, set[str]]:
    """MID -> its ancestors in the mirror's hierarchy (the root left out), worked out independently."""
    out = {} if out is None else out
    for child in node.get("Subcategory", []):
        out.setdefault(child["LabelName"], set()).update(above)
        _ancestors(child, (*above, child["LabelName"]), out)
    return out


def _expected_labels(mirror, requested: list[str], image_id: str, annotated: set[str]) -> tuple[set, set, set]:
    """(pos, neg, not exhaustive) MIDs of an image as documented: a label speaks for its ancestors when present, for
    its descendants when absent; instances make a class present."""
    above = _ancestors(HIERARCHY)
    rows = [(mid, c) for i, mid, c in mirror.labels if i == image_id]
    present = {c for mid, conf in rows if conf == 1 for c in requested if mid == c or c in above.get(mid, ())}
    absent = {c for mid, conf in rows if conf == 0 for c in requested if mid == c or mid in above.get(c, ())}
    return present | annotated, absent - present - annotated, present - annotated


def _by_mid(dataset: dict, ids: list[int]) -> set[str]:
    mids = {c["id"]: c["mid"] for c in dataset["categories"]}
    return {mids[i] for i in ids}


def test_verified_labels_follow_the_hierarchy(mirror, server, tmp_path):
    report = fetch(server, tmp_path, classes=["Cat", "Traffic light"])  # every image with a mask of either
    dataset = json.loads((tmp_path / "annotations.json").read_text())
    ours = [i for i in mirror.instances if i.label in (CAT, LIGHT)]
    assert report.unmatched_masks == sum(1 for i in ours if i.mask_path and i.box is None) > 0
    not_exhaustive = 0
    for img in dataset["images"]:
        annotated = _by_mid(dataset, [a["category_id"] for a in dataset["annotations"] if a["image_id"] == img["id"]])
        pos, neg, ne = _expected_labels(mirror, [CAT, LIGHT], img["open_images_id"], annotated)
        assert _by_mid(dataset, img["pos_category_ids"]) == pos
        assert _by_mid(dataset, img["neg_category_ids"]) == neg
        assert _by_mid(dataset, img["not_exhaustive_category_ids"]) == ne
        not_exhaustive += bool(ne)
    assert not_exhaustive == 1  # the mirror's Cat verified present without a box
    assert any(img["neg_category_ids"] for img in dataset["images"])


def test_negative_images_are_verified_to_hold_none_of_the_classes(mirror, server, tmp_path):
    # Candidates: verified without Cat and Traffic light; one of them says "no Animal" instead of "no Cat".
    candidates = {i for i, absent in mirror.negatives.items() if {LIGHT} <= absent and absent & {CAT, ANIMAL}}
    assert len(candidates) == 5
    key = {i: hashlib.blake2b(f"3:{i}".encode(), digest_size=16).digest() for i in candidates}
    report = fetch(server, tmp_path / "two", **REFERENCE, negatives=2)
    dataset = json.loads((tmp_path / "two" / "annotations.json").read_text())
    negatives = [img for img in dataset["images"] if not any(a["image_id"] == img["id"] for a in dataset["annotations"])]
    assert {img["open_images_id"] for img in negatives} == set(sorted(candidates, key=lambda i: (key[i], i))[:2])
    for img in negatives:
        assert img["neg_category_ids"] == [1, 2] and img["pos_category_ids"] == []
        assert (tmp_path / "two" / img["file_name"]).read_bytes() == (
            mirror.img / "validation" / f"{img['open_images_id']}.jpg").read_bytes()  # fmt: skip
    assert report.counts["negative_images"] == 2 and "2 verified-negative images" in report.summary()

    more = fetch(server, tmp_path / "all", **REFERENCE, negatives=50)  # more asked than there are: all of them
    assert more.counts["negative_images"] == 5
    # For Cat alone, "no Cat" is enough: the sixth extra image, and any image of other classes verified without Cat.
    with_cat_only = fetch(server, tmp_path / "cat", classes=["Cat"], max_images_per_class=2, seed=3, negatives=50)
    cat_set = json.loads((tmp_path / "cat" / "annotations.json").read_text())
    cat_images = {img["open_images_id"] for img in cat_set["images"] if img["pos_category_ids"]}
    without_cat = {i for i in mirror.image_sizes if i not in cat_images
                   and _expected_labels(mirror, [CAT], i, set())[1] == {CAT}}  # fmt: skip
    assert with_cat_only.counts["negative_images"] == len(without_cat) > 6


def test_negatives_flag(server, tmp_path, capsys):
    base = ["openimages", "download", "--classes", "Cat,Traffic light", "--split", "validation", "--seed", "3",
            "--max-images-per-class", "4", "--annotations-url", server.url + "ann/", "--images-url",
            server.url + "img/"]  # fmt: skip
    assert main([*base, "--output", str(tmp_path / "bad"), "--negatives", "-1"]) == 2
    assert capsys.readouterr().err.strip() == "error: --negatives must be 0 or more, got -1"
    assert main([*base, "--output", str(tmp_path / "ok"), "--negatives", "3"]) == 0
    assert "3 verified-negative images" in capsys.readouterr().out


def test_subclass_boxes_are_instances_of_the_requested_class(mirror, server, tmp_path):
    fetch(server, tmp_path, classes=["Car"])
    dataset = json.loads((tmp_path / "annotations.json").read_text())
    chosen = {img["open_images_id"]: img for img in dataset["images"]}
    limousines = [i for i in mirror.instances if i.label == LIMOUSINE and i.image_id in chosen]
    assert limousines
    got = [a for a in dataset["annotations"] if a.get("open_images_label") == LIMOUSINE]
    assert sorted(tuple(a["bbox"]) for a in got) == sorted(
        tuple(box_bbox(i.box, *mirror.image_sizes[i.image_id])) for i in limousines
    )
    assert all(a["category_id"] == 1 and a["isbbox"] for a in got)
    assert dataset["categories"][0]["mid"] == CAR


def test_box_csv_is_fetched_once_and_only_the_chosen_rows_are_kept(mirror, server, tmp_path):
    report = fetch(server, tmp_path, **REFERENCE)
    size = mirror.box_csv_path().stat().st_size
    assert server.bytes_by_path[BOX_CSV] == size + 1  # the file once, and its last byte (its size)
    assert report.box_rows_scanned == len(mirror.box_csv_path().read_text().splitlines()) - 1
    cached = list((tmp_path / ".openimages" / "boxes").iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".csv"  # no .part or .progress left
    chosen = {img["open_images_id"] for img in json.loads((tmp_path / "annotations.json").read_text())["images"]}
    rows = list(csv.DictReader(io.StringIO(cached[0].read_text())))
    assert {r["ImageID"] for r in rows} == chosen  # every chosen image has boxes in the mirror
    every = list(csv.DictReader(io.StringIO(mirror.box_csv_path().read_text())))
    assert rows == [r for r in every if r["ImageID"] in chosen]


def test_an_interrupted_box_stream_continues_where_it_stopped(mirror, reference, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(box_csv_module, "CHUNK", 512)  # many chunks
    monkeypatch.setattr(box_csv_module, "PROGRESS_EVERY", 1024)  # the progress saved every other chunk
    monkeypatch.setattr(download_module, "download_openimages",
                        lambda **kw: download_openimages(**kw, retry=FAST_RETRY))  # fmt: skip
    out = tmp_path / "out"
    args = ["openimages", "download", "--classes", "Cat,Traffic light", "--split", "validation",
            "--max-images-per-class", "4", "--seed", "3", "--output", str(out)]  # fmt: skip
    with MirrorServer(mirror.root) as server:
        server.inject("bbox.csv", "drop", times=1000, skip=4)  # the tail and 3 chunks arrive, then it breaks off
        urls = ["--annotations-url", server.url + "ann/", "--images-url", server.url + "img/"]
        assert main([*args, *urls]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: cannot download v5/validation-annotations-bbox.csv from ")
        assert "streamed so far are kept" in err and len(err.strip().splitlines()) == 1
        assert (out / ".openimages" / "v5" / "validation-annotations-object-segmentation.csv").is_file()
        progress = json.loads(next((out / ".openimages" / "boxes").glob("*.progress")).read_text())
        assert progress["offset"] > 0

        server.clear_faults()
        server.reset_counters()
        assert main([*args, *urls]) == 0
        box_requests = [rng for path, rng, _ in server.log if path == BOX_CSV]
        assert box_requests[1].startswith(f"bytes={progress['offset']}-")  # after the tail: from where it stopped
        assert server.bytes_by_path[BOX_CSV] <= mirror.box_csv_path().stat().st_size - progress["offset"] + 1024
    assert (out / "annotations.json").read_bytes() == reference


def _broken_mirror(mirror, tmp_path, relative: str, edit) -> MirrorServer:
    root = tmp_path / "mirror"
    shutil.copytree(mirror.root, root)
    path = root / "ann" / relative
    path.write_text(edit(path.read_text()))
    return MirrorServer(root)


@pytest.mark.parametrize(
    "relative, edit, message",
    [
        ("v5/validation-annotations-bbox.csv", lambda t: t.replace("IsGroupOf", "Group", 1),
         "error: v5/validation-annotations-bbox.csv: not an Open Images box CSV (no column IsGroupOf)"),
        ("v5/validation-annotations-human-imagelabels-boxable.csv", lambda t: t.replace(",Confidence", ",Conf", 1),
         "error: v5/validation-annotations-human-imagelabels-boxable.csv: not an Open Images image-level labels CSV "
         "(no column Confidence)"),
        ("2018_04/bbox_labels_600_hierarchy.json", lambda t: t.replace("/m/01lcw4", "/m/0unknown"),
         "names 1 unknown class ids: /m/0unknown"),
    ],
    ids=["box-csv-columns", "labels-csv-columns", "hierarchy-unknown-class"],
)  # fmt: skip
def test_bad_annotation_files_are_one_error_line(mirror, tmp_path, capsys, relative, edit, message):
    out = tmp_path / "out"
    with _broken_mirror(mirror, tmp_path, relative, edit) as server:
        code = main(["openimages", "download", "--classes", "Cat", "--split", "validation", "--output", str(out),
                     "--annotations-url", server.url + "ann/", "--images-url", server.url + "img/"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert (out / ".openimages" / "v5" / "class-descriptions-boxable.csv").is_file()  # what was fetched is kept


def test_line_filter_reads_the_image_column_wherever_it_is():
    header = ["Source", "ImageID", "LabelName"]
    lines = b"x,abc,/m/1\ny,abcd,/m/2\nz,ab,/m/3\nw,abc,/m/4"
    kept = LineFilter(header, {"abc", "ab"}).keep(lines)
    assert kept == [b"x,abc,/m/1\n", b"z,ab,/m/3\n", b"w,abc,/m/4"]
    first = LineFilter(["ImageID", "LabelName"], {"abc", "ab"})
    assert first.keep(b"abc,/m/1\nabcd,/m/2\nab,/m/3\nabx,/m/4\n") == [b"abc,/m/1\n", b"ab,/m/3\n"]


def test_masks_pair_with_the_closest_box_within_the_tolerance():
    def mask(i: str, box):
        return MaskRow("img", "/m/a", i, f"img_{i}.png", box)

    def box(coords, label="/m/a"):
        return BoxRow("img", label, coords, False)

    masks = [mask("1", (0.1, 0.5, 0.1, 0.5)), mask("2", (0.102, 0.502, 0.1, 0.5)), mask("3", (0.7, 0.9, 0.7, 0.9))]
    boxes = [box((0.1021, 0.5021, 0.1, 0.5)), box((0.1, 0.5, 0.1001, 0.5)), box((0.7, 0.9, 0.7, 0.91)),
             box((0.7, 0.9, 0.7, 0.9), "/m/b")]  # fmt: skip
    # mask 2's closest box is box 0; mask 1's is box 1 though box 0 is also within tolerance of it;
    # mask 3's only same-label box is 0.01 away: too far; the /m/b box is of another class.
    assert match_masks_to_boxes(masks, boxes) == {1: 0, 0: 1}
