"""`maskrcnn convert` end to end through the CLI entry point: summaries, skip lists, and one-line errors."""

from __future__ import annotations

import json

from maskrcnn.cli import main


def test_convert_via_balloon_val(shared_data, tmp_path, capsys):
    rc = main(["convert", "--format", "via", str(shared_data / "balloon" / "val"), "--output", str(tmp_path / "out")])
    assert rc == 0
    out = capsys.readouterr().out
    assert out.strip() == f"wrote {tmp_path / 'out'}: 13 images, 50 instances, 1 categories"
    data = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert len(data["images"]) == 13 and all((tmp_path / "out" / im["file_name"]).is_file() for im in data["images"])


def test_convert_via_with_images_folder(tmp_path, write_image, capsys):
    write_image(tmp_path / "pics" / "a.png", 30, 20)
    rect = {"name": "rect", "x": 2, "y": 2, "width": 10, "height": 5}
    regions = [{"shape_attributes": rect, "region_attributes": {}}]
    (tmp_path / "ann").mkdir()
    via_json = tmp_path / "ann" / "via_region_data.json"
    via_json.write_text(json.dumps({"a.png1": {"filename": "a.png", "regions": regions}}))
    args = ["convert", "--format", "via", str(tmp_path / "ann"), "--output", str(tmp_path / "out")]
    assert main(args) == 2  # no image found at all: nothing to convert is an error, not an empty dataset
    err = capsys.readouterr().err
    assert err.startswith("error: none of the 1 images of") and err.count("\n") == 1
    assert (f"{via_json}: 'a.png1': image 'a.png' not found in {tmp_path / 'ann'} or {tmp_path / 'ann' / 'images'} "
            f"or {tmp_path / 'ann' / 'JPEGImages'} (1 region skipped)") in err  # fmt: skip
    assert main([*args, "--images", str(tmp_path / "pics")]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'out'}: 1 images, 1 instances, 1 categories"


def test_convert_yolo_seg_reports_skips_and_uses_names(tmp_path, write_image, capsys):
    write_image(tmp_path / "ds" / "images" / "a.jpg", 40, 40)
    (tmp_path / "ds" / "labels").mkdir(parents=True)
    (tmp_path / "ds" / "labels" / "a.txt").write_text("0 0.1 0.1 0.9 0.1 0.9 0.9\n3 0.1 0.1 0.5 0.1 0.5 0.5\n")
    (tmp_path / "names.txt").write_text("thing\n")
    rc = main(
        ["convert", "--format", "yolo-seg", str(tmp_path / "ds"), "--output", str(tmp_path / "out"),
         "--names", str(tmp_path / "names.txt")]
    )  # fmt: skip
    assert rc == 0
    assert capsys.readouterr().out.splitlines() == [
        f"wrote {tmp_path / 'out'}: 1 images, 1 instances, 1 categories",
        "skipped 1:",
        "  ds/labels/a.txt:2: unknown class id 3 (the names list has 1 classes, ids 0..0)",
    ]


def test_convert_errors_are_one_line(tmp_path, capsys):
    assert main(["convert", "--format", "yolo-seg", str(tmp_path / "missing"), "--output", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == f"error: input not found: {tmp_path / 'missing'}\n"
    (tmp_path / "file").write_text("x")
    assert main(["convert", "--format", "via", str(tmp_path / "missing"), "--output", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err == f"error: input not found: {tmp_path / 'missing'}\n"
    (tmp_path / "v.json").write_text("{}")
    assert main(["convert", "--format", "via", str(tmp_path / "v.json"), "--output", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err == f"error: output is not a folder: {tmp_path / 'file'}\n"
