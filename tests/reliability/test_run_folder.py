"""Item 1: training into a folder that holds a run never overwrites it silently."""

from __future__ import annotations

from faults import loss_records, one_error_line, train_args

from maskrcnn.checkpoint import load_checkpoint
from maskrcnn.cli import main


def test_a_run_folder_is_refused_unless_resumed_or_overwritten(shapes_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(shapes_data, out, "solver.max_iter=2", flags=("--val", str(shapes_data["val"])))) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {"last.pt", "best.pt", "config.yaml", "metrics.jsonl"} <= before.keys()
    capsys.readouterr()

    assert main(train_args(shapes_data, out, "solver.max_iter=3")) == 2
    error = one_error_line(capsys.readouterr().err)
    assert str(out) in error and "--resume" in error and "--overwrite" in error
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing touched

    assert main(train_args(shapes_data, out, "solver.max_iter=3", flags=("--overwrite",))) == 0
    assert not (out / "best.pt").exists()  # the old run's best weights are not left beside the new ones
    assert load_checkpoint(out / "last.pt").extra["iteration"] == 3
    assert [r["iteration"] for r in loss_records(out)] == [1, 2, 3]  # no record of the old run
    assert "eval" not in (out / "metrics.jsonl").read_text()
