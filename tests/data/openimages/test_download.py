"""End to end: ``download_openimages`` and the CLI against the generated mirror on a loopback server."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
from oi_fetch import FAST_RETRY, fetch
from oi_mirror import UNSAFE_NAMES, Mirror, annotation_key, expected_instances
from oi_server import MirrorServer
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

import maskrcnn.data.openimages.download as download_module
from maskrcnn.cli import main
from maskrcnn.data.openimages.download import download_openimages
from maskrcnn.data.openimages.layout import safe_image_id
from maskrcnn.errors import UserError

CAT, LIGHT = "/m/01yrx", "/m/015qff"


def _chosen_by_rule(mirror: Mirror, mid: str, n: int, seed: int) -> set[str]:
    """The documented choice, computed independently: per class the n images with the smallest
    blake2b(f"{seed}:{ImageID}") among those with a mask of that class."""
    ids = sorted({i.image_id for i in mirror.instances if i.label == mid and i.mask_path is not None})
    key = {i: hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=16).digest() for i in ids}
    return set(sorted(ids, key=lambda i: (key[i], i))[:n])


def test_dataset_has_every_box_and_mask_of_the_chosen_images(mirror, server, tmp_path):
    report = fetch(server, tmp_path, max_images_per_class=4, seed=3)
    assert report.complete and not report.skipped
    coco = COCO(str(tmp_path / "annotations.json"))  # a standard COCO reader accepts it
    dataset = json.loads((tmp_path / "annotations.json").read_text())
    assert dataset["categories"] == [
        {"id": 1, "name": "Cat", "supercategory": "object", "mid": CAT},
        {"id": 2, "name": "Traffic light", "supercategory": "object", "mid": LIGHT},
    ]
    chosen = _chosen_by_rule(mirror, CAT, 4, 3) | _chosen_by_rule(mirror, LIGHT, 4, 3)
    assert {img["open_images_id"] for img in dataset["images"]} == chosen
    # Every Cat / Traffic light mask and box of a chosen image, and nothing else.
    expected = expected_instances(mirror, {CAT: CAT, LIGHT: LIGHT}, chosen)
    images = {img["id"]: img for img in dataset["images"]}
    got = {annotation_key(dataset, a): a for a in dataset["annotations"]}
    assert got.keys() == expected.keys()
    assert report.images == len(chosen) and report.annotations == len(expected)
    kinds = {kind for kind, *_ in got}
    assert kinds == {"mask", "box"} and any(a["iscrowd"] for a in dataset["annotations"])
    for key, ann in got.items():
        inst = expected[key]
        img = images[ann["image_id"]]
        assert (img["width"], img["height"]) == mirror.image_sizes[inst.image_id]
        assert ann["category_id"] == (1 if inst.label == CAT else 2)
        assert ann["iscrowd"] == int(inst.group_of)
        if key[0] == "box":  # box-only: its box, as a polygon that COCO tools read, flagged
            x, y, w, h = ann["bbox"]
            assert ann["isbbox"] is True and ann["segmentation"] == [[x, y, x + w, y, x + w, y + h, x, y + h]]
            assert ann["area"] == pytest.approx(w * h, abs=0.01)
            continue
        rle = ann["segmentation"]
        bitmap = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
        assert np.array_equal(bitmap.astype(bool), inst.expected)  # resized to the image, nearest neighbour
        ys, xs = np.nonzero(inst.expected)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]  # from the mask
        assert ann["area"] == int(inst.expected.sum()) and "isbbox" not in ann
    for img in dataset["images"]:
        assert img["file_name"] == f"images/{img['open_images_id']}.jpg"
        local = (tmp_path / img["file_name"]).read_bytes()
        assert local == (mirror.img / "validation" / f"{img['open_images_id']}.jpg").read_bytes()
    assert len(coco.getAnnIds()) == len(expected)
    # The counts in the report: masks found with no box row, boxes with no mask (the decoy is one of them).
    in_chosen = [i for i in mirror.instances if i.image_id in chosen and i.label in (CAT, LIGHT)]
    assert report.unmatched_masks == sum(1 for i in in_chosen if i.mask_path and i.box is None)
    assert report.unmatched_boxes == sum(1 for i in in_chosen if i.box is not None and i.mask_path is None)
    assert report.counts == {
        "masks": sum(1 for k in got if k[0] == "mask"),
        "box_only": sum(1 for a in got.values() if a.get("isbbox") and not a["iscrowd"]),
        "group_of": sum(1 for a in got.values() if a["iscrowd"]),
        "negative_images": 0,
    }
    assert f"{report.counts['box_only']} box-only instances, {report.counts['group_of']} group-of" in report.summary()
    # And the project's own training dataset reads it as it is: box-only instances without a mask.
    from maskrcnn.data.coco import CocoDataset

    train_set = CocoDataset(tmp_path / "annotations.json")
    assert train_set.class_names == ["Cat", "Traffic light"] and len(train_set) == len(chosen)
    for index, img in enumerate(dataset["images"]):
        image, target = train_set[index]
        assert tuple(image.shape) == (3, img["height"], img["width"])
        own = [a for a in dataset["annotations"] if a["image_id"] == img["id"] and not a["iscrowd"]]
        assert sorted(target["has_mask"].tolist()) == sorted(not a.get("isbbox") for a in own)
        areas = sorted(a["area"] for a in own if not a.get("isbbox"))
        assert sorted(int(m.sum()) for m, h in zip(target["masks"], target["has_mask"]) if h) == areas


def test_fetches_far_less_than_the_mask_shards(mirror, server, tmp_path):
    report = fetch(server, tmp_path, max_images_per_class=2, seed=0)
    assert report.complete and report.masks_fetched > 0
    zip_paths = [p for p in server.bytes_by_path if p.endswith(".zip")]
    sent = sum(server.bytes_by_path[p] for p in zip_paths)
    whole = sum(mirror.shard_bytes[p[-5]] for p in zip_paths)
    assert sent < 0.2 * whole, (sent, whole)
    assert all(rng is not None for path, rng, _ in server.log if path.endswith(".zip"))


def test_same_command_again_fetches_nothing_and_writes_the_same_json(reference, server, tmp_path):
    fetch(server, tmp_path, max_images_per_class=4, seed=3)
    assert (tmp_path / "annotations.json").read_bytes() == reference
    server.reset_counters()
    again = fetch(server, tmp_path, max_images_per_class=4, seed=3)
    assert server.requests == 0 and server.bytes_sent == 0 and again.bytes_fetched == 0
    assert again.images_reused == again.images and again.masks_fetched == 0
    assert (tmp_path / "annotations.json").read_bytes() == reference


def test_server_without_range_support(mirror, reference, tmp_path):
    with MirrorServer(mirror.root, ranges=False) as server:
        report = fetch(server, tmp_path, max_images_per_class=4, seed=3)
        assert report.complete and report.whole_shards
        assert (tmp_path / "annotations.json").read_bytes() == reference
        for shard in report.whole_shards:  # fetched whole, once
            path = f"/ann/v5/validation-masks/validation-masks-{shard}.zip"
            assert server.bytes_by_path[path] == mirror.shard_bytes[shard]
        server.reset_counters()
        fetch(server, tmp_path, max_images_per_class=4, seed=3)
        assert server.bytes_sent == 0
    assert "ignored Range" in report.summary()


def test_injected_errors_and_dropped_connections_are_retried(mirror, reference, server, tmp_path):
    dataset = json.loads(reference)
    first, second = (img["open_images_id"] for img in dataset["images"][:2])
    server.inject(f"{first}.jpg", "500", times=2)
    server.inject(f"{second}.jpg", "drop", times=2)
    server.inject("segmentation.csv", "drop", times=1)
    server.inject(".zip", "drop", times=2, skip=3)  # some member ranges, after a few directory reads
    server.inject(".zip", "500", times=1)
    report = fetch(server, tmp_path, max_images_per_class=4, seed=3)
    assert all(fault.times == 0 for fault in server.faults)  # every injected failure happened
    assert report.complete, report.summary()
    assert (tmp_path / "annotations.json").read_bytes() == reference
    statuses = [s for _, _, s in server.log]
    assert statuses.count(500) == 3


def test_a_timeout_is_retried(mirror, reference, tmp_path):
    dataset = json.loads(reference)
    with MirrorServer(mirror.root, stall_s=2.5) as server:
        server.inject(f"{dataset['images'][0]['open_images_id']}.jpg", "stall", times=1)
        report = fetch(server, tmp_path, max_images_per_class=4, seed=3)
    assert report.complete and (tmp_path / "annotations.json").read_bytes() == reference


@pytest.fixture
def fast_cli(monkeypatch):
    """The CLI with test retry settings (its own are seconds apart)."""
    fast = functools.partial(download_openimages, retry=FAST_RETRY)
    monkeypatch.setattr(download_module, "download_openimages", fast)

    def run(server: MirrorServer, out: Path, *extra: str) -> int:
        return main(["openimages", "download", "--classes", "Cat,traffic light", "--split", "validation",
                     "--max-images-per-class", "4", "--seed", "3", "--workers", "4", "--output", str(out),
                     "--annotations-url", server.url + "ann", "--images-url", server.url + "img", *extra])  # fmt: skip

    return run


def test_failures_after_retries_give_a_partial_dataset_then_a_rerun_completes(
    reference, server, tmp_path, fast_cli, capsys
):
    dataset = json.loads(reference)
    lost_image = dataset["images"][0]["open_images_id"]
    by_id = {img["id"]: img["open_images_id"] for img in dataset["images"]}
    masked = [by_id[a["image_id"]] for a in dataset["annotations"] if by_id[a["image_id"]][0] != lost_image[0]]
    lost_shard = masked[0][0]  # every image of this shard loses its masks
    server.inject(f"{lost_image}.jpg", "500", times=1000)
    server.inject(f"masks-{lost_shard}.zip", "drop", times=1000)
    assert fast_cli(server, tmp_path) == 1
    out = capsys.readouterr().out
    assert f"image {lost_image}: " in out and "HTTP 500" in out and "PARTIAL" in out
    partial = json.loads((tmp_path / "annotations.json").read_text())
    left = {img["open_images_id"] for img in partial["images"]}
    assert lost_image not in left and not any(i.startswith(lost_shard) for i in left)
    assert left == {i for i in by_id.values() if i != lost_image and not i.startswith(lost_shard)}
    assert not list((tmp_path / "images").glob(f"{lost_image}*")) and not list(tmp_path.rglob("*.tmp"))

    server.clear_faults()
    assert fast_cli(server, tmp_path) == 0
    assert (tmp_path / "annotations.json").read_bytes() == reference


def test_corrupt_masks_and_unsafe_names_are_skipped(bad_mirror, tmp_path):
    out = tmp_path / "out"
    with MirrorServer(bad_mirror.root) as server:
        report = fetch(server, out, classes=["Cat"])
    assert report.complete
    dataset = json.loads((out / "annotations.json").read_text())
    got = {annotation_key(dataset, a) for a in dataset["annotations"]}
    chosen = {i.image_id for i in bad_mirror.instances if i.label == CAT and i.mask_path and safe_image_id(i.image_id)}
    assert got == set(expected_instances(bad_mirror, {CAT: CAT}, chosen))
    text = "\n".join(report.skipped)
    reasons = {
        "corrupt-png": "corrupt mask PNG",
        "corrupt-member": "corrupt zip member",
        "missing-member": "not in v5/validation-masks",
        "empty": "mask empty after resizing",
    }
    for problem, reason in reasons.items():
        inst = next(i for i in bad_mirror.instances if i.problem == problem)
        line = next(m for m in report.skipped if m.startswith(f"mask {inst.mask_path}: {reason}"))
        # An unusable mask whose object has a box row is kept as a box-only instance, the others are left out.
        assert line.endswith("kept as box-only") == (inst.box is not None)
    assert {i.problem for i in bad_mirror.instances if i.problem and i.box} == {"corrupt-png", "empty"}
    for name in UNSAFE_NAMES:
        assert f"MaskPath {name!r} is not a plain file name" in text
    assert "ImageID '../../evil-id' is not a plain file name" in text
    # Nothing written outside the output folder, nor any file named after an unsafe member.
    assert not Path("/tmp/oi-evil-absolute.png").exists()
    assert not [p for p in tmp_path.parent.rglob("*evil*")]
    for folder, _, files in os.walk(out):
        assert Path(folder).resolve().is_relative_to(out.resolve())
    # A re-run decides the same from the cache, without fetching.
    with MirrorServer(bad_mirror.root) as server:
        again = fetch(server, out, classes=["Cat"])
        assert server.requests == 0
    assert again.skipped == report.skipped


def test_bad_class_names(server, tmp_path, fast_cli, capsys):
    base = ["openimages", "download", "--split", "validation", "--output", str(tmp_path),
            "--annotations-url", server.url + "ann", "--images-url", server.url + "img"]  # fmt: skip
    assert main([*base, "--classes", "Cat,Trafic light"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown Open Images class 'Trafic light'") and "'Traffic light'" in err
    assert "Traceback" not in err
    assert main([*base, "--classes", "tree"]) == 2
    assert "'Tree' (/m/07j7r) has boxes but no instance masks" in capsys.readouterr().err
    assert not (tmp_path / "images").exists()  # nothing fetched but the class lists and the CSV


def test_unreachable_servers_give_one_clear_message(server, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/"
    with pytest.raises(UserError) as e:
        download_openimages(classes=["Cat"], split="validation", output_dir=tmp_path / "a", annotations_url=dead,
                            retry=FAST_RETRY)  # fmt: skip
    message = str(e.value)
    assert "v5/class-descriptions-boxable.csv" in message and "refused" in message
    # the argument to change, which the CLI names by its flag
    assert e.value.argument == "annotations_url" and "set annotations_url to a mirror" in message
    with pytest.raises(UserError) as e:  # annotations fine, images host dead
        download_openimages(classes=["Cat"], split="validation", output_dir=tmp_path / "c",
                            annotations_url=server.url + "ann/", images_url=dead, retry=FAST_RETRY,
                            workers=2)  # fmt: skip
    assert "cannot download images from 127.0.0.1" in str(e.value) and e.value.argument == "images_url"
    expected = "set --images-url to a mirror laid out as URL/validation/<ImageID>.jpg"
    assert e.value.naming("--images-url").endswith(expected)
