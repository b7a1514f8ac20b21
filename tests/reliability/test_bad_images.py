"""Item 4: bad images are all reported before training starts; one that still fails mid-run is skipped."""

from __future__ import annotations

from faults import damaged_copy, loss_records, one_error_line, train_args, train_job

from maskrcnn.cli import main
from maskrcnn.data.loader import GroupedBatchSampler
from maskrcnn.engine.train import train


def test_every_bad_image_is_reported_before_training_starts(shapes_data, tmp_path, capsys):
    data = {"train": damaged_copy(shapes_data["train"], tmp_path / "train", {1: "text", 5: "resized", 9: "empty"}),
            "val": damaged_copy(shapes_data["val"], tmp_path / "val", {0: "text"})}  # fmt: skip
    out = tmp_path / "run"
    # a loader worker, as in real runs: a bad image there used to end the run with the worker's traceback
    status = main(train_args(data, out, "solver.max_iter=4", "solver.num_workers=1", flags=("--val", str(data["val"]))))
    err = capsys.readouterr().err
    assert status == 2
    bad = [line for line in err.splitlines() if line.startswith("bad image:")]
    assert len(bad) == 4
    assert "000001.png: not an image format" in bad[0] and "starts with b'<html>" in bad[0]
    assert "000005.png is 32x32 pixels but" in bad[1] and "says 64x64" in bad[1]
    assert "000009.png: the file is empty" in bad[2]
    assert "val/images/000000.png" in bad[3]
    assert "4 of the 22 images" in one_error_line(err)
    assert not out.exists()  # nothing started


def test_an_image_that_fails_to_decode_mid_run_is_skipped_and_counted(shapes_data, tmp_path, capsys):
    # Damage both images of the first batch (that step is skipped) and one image of a later batch (its step runs
    # on the other image). 16 square images in batches of 2: 8 iterations see each image once.
    sampler = iter(GroupedBatchSampler([1.0] * 16, batch_size=2, seed=0))
    first, later = next(sampler), next(sampler)
    damaged = [first[0][0], first[1][0], later[0][0]]
    data = {"train": damaged_copy(shapes_data["train"], tmp_path / "train", {i: "truncated" for i in damaged})}
    out = tmp_path / "run"
    summary = train(train_job(data, out, "solver.max_iter=8", "solver.seed=0"))
    assert summary["iteration"] == 8 and summary["skipped_images"] == 3
    err = capsys.readouterr().err
    for i in damaged:
        assert f"{i:06d}.png: the file is truncated or damaged" in err
    records = loss_records(out)
    assert [r["iteration"] for r in records if "loss" in r] == [2, 3, 4, 5, 6, 7, 8]
    assert {r["iteration"]: r.get("skipped_images", 0) for r in records} == {1: 2, 2: 1, **{i: 0 for i in range(3, 9)}}
