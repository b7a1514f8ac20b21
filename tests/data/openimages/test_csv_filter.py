from __future__ import annotations

import csv
import hashlib
import io
import random

import pytest

from maskrcnn.data.openimages.csv_filter import COLUMNS, choose_images, filter_segmentation_csv, scan_rows
from maskrcnn.errors import UserError

LABELS = ["/m/01yrx", "/m/015qff", "/m/0k4j", "/m/0k4j1", "/m/01g317"]


def _random_csv(rng: random.Random, n_rows: int, n_images: int) -> list[list[str]]:
    images = [f"{rng.getrandbits(64):016x}" for _ in range(n_images)]
    rows = []
    for k in range(n_rows):
        image_id, label = rng.choice(images), rng.choice(LABELS)
        box_id = f"{k:08x}"
        rows.append([f"{image_id}_{label.replace('/', '')}_{box_id}.png", image_id, label, box_id,
                     "0.1", "0.5", "0.2", "0.6", "0.9", "0.1 0.2 1;0.3 0.4 0"])  # fmt: skip
    return rows


def _text(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    return buf.getvalue()


@pytest.mark.parametrize("wanted", [["/m/0k4j"], ["/m/01yrx", "/m/0k4j1"], LABELS])
def test_prefiltered_scan_equals_a_full_parse(wanted):
    # "/m/0k4j" is a prefix of "/m/0k4j1": the substring prefilter must not confuse them.
    rows = _random_csv(random.Random(1), 500, 60)
    found = [(r.image_id, r.label, r.box_id, r.mask_path) for r in
             scan_rows(_text(rows).splitlines(keepends=True), labels=wanted, source="t.csv")]  # fmt: skip
    expected = [(r[1], r[2], r[3], r[0]) for r in rows if r[2] in wanted]
    assert found == expected and len(found) > 0


def _smallest_key_rule(rows: list[list[str]], label: str, n: int, seed: int) -> set[str]:
    """The documented choice, written independently: the n images with the smallest blake2b(seed:ImageID)."""
    ids = sorted({r[1] for r in rows if r[2] == label})
    key = {i: hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=16).digest() for i in ids}
    return set(sorted(ids, key=lambda i: (key[i], i))[:n])


def test_choice_follows_the_rule_and_ignores_row_order(tmp_path):
    rng = random.Random(2)
    rows = _random_csv(rng, 3000, 400)
    wanted = ["/m/01yrx", "/m/015qff"]
    picks = []
    for shuffle in range(3):
        rng.shuffle(rows)
        path = tmp_path / f"s{shuffle}.csv"
        path.write_text(_text(rows), encoding="utf-8")
        kept = filter_segmentation_csv(path, labels=wanted, max_images_per_class=7, seed=5)
        picks.append(kept)
    assert picks[0] == picks[1] == picks[2]  # same rows, same order, whatever the CSV order
    chosen = {r.image_id for r in picks[0]}
    assert chosen == _smallest_key_rule(rows, wanted[0], 7, 5) | _smallest_key_rule(rows, wanted[1], 7, 5)
    # Every wanted-class instance of a chosen image is kept, and nothing else.
    expected = sorted((r[1], r[2], r[3]) for r in rows if r[1] in chosen and r[2] in wanted)
    assert sorted((r.image_id, r.label, r.box_id) for r in picks[0]) == expected
    # Sorted by image, then by the order of the labels asked for.
    order = [(r.image_id, wanted.index(r.label), r.box_id) for r in picks[0]]
    assert order == sorted(order)


def test_seed_changes_the_choice_and_the_cap_holds():
    rows = _random_csv(random.Random(3), 2000, 300)
    mask_rows = list(scan_rows(_text(rows).splitlines(keepends=True), labels=["/m/01yrx"], source="t"))
    by_seed = [choose_images(mask_rows, labels=["/m/01yrx"], max_images_per_class=10, seed=s) for s in range(4)]
    assert all(len(c) == 10 for c in by_seed)
    assert len({frozenset(c) for c in by_seed}) == 4
    few = choose_images(mask_rows[:3], labels=["/m/01yrx"], max_images_per_class=10, seed=0)
    assert few == {r.image_id for r in mask_rows[:3]}


def test_bad_rows_are_reported_with_their_line_and_skipped(tmp_path):
    path = tmp_path / "x.csv"
    good = "a1b2c3d4e5f60708_m01yrx_00000001.png,a1b2c3d4e5f60708,/m/01yrx,00000001,0,1,0,1,0.9,\n"
    path.write_text(",".join(COLUMNS) + "\n" + good + "broken,/m/01yrx\n"
                    + "../x.png,a1b2c3d4e5f60708,/m/01yrx,2,0,1,0,1,0.9,\n"
                    + good + "\n", encoding="utf-8")  # fmt: skip
    problems: list[str] = []
    rows = filter_segmentation_csv(path, labels=["/m/01yrx"], max_images_per_class=None, seed=0, problems=problems)
    assert [r.box_id for r in rows] == ["00000001"]
    assert problems == [
        "x.csv:3: 2 columns, expected 10",
        "x.csv:4: MaskPath '../x.png' is not a plain file name, row skipped",
        "x.csv: mask a1b2c3d4e5f60708_m01yrx_00000001.png listed twice, kept once",
    ]


def test_not_a_segmentation_csv(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_text("ImageID,Source,LabelName,Confidence\n", encoding="utf-8")
    with pytest.raises(UserError, match="no column MaskPath, BoxID"):
        filter_segmentation_csv(path, labels=["/m/01yrx"], max_images_per_class=None, seed=0)
