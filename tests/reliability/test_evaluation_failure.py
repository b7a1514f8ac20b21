"""Item 2: an evaluation that fails costs no training: last.pt is written first and training goes on."""

from __future__ import annotations

import json

from faults import damaged_copy, one_error_line, train_args

from maskrcnn.checkpoint import load_checkpoint
from maskrcnn.cli import main


def test_a_failing_evaluation_is_reported_and_training_goes_on(shapes_data, tmp_path, capsys):
    # The header is intact, so the up-front check passes; decoding the pixels fails during evaluation.
    val = damaged_copy(shapes_data["val"], tmp_path / "val", {2: "truncated"})
    out = tmp_path / "run"
    # checkpoint_period 1000: only the saves around the evaluations write last.pt
    status = main(train_args(shapes_data, out, "solver.max_iter=4", "solver.eval_period=2",
                             "solver.checkpoint_period=1000", flags=("--val", str(val))))  # fmt: skip
    err = capsys.readouterr().err
    assert status == 1
    assert "warning: evaluation at iteration 2 failed: cannot read image" in err and "training goes on" in err
    error = one_error_line(err)
    assert error.startswith("error: evaluation at iteration 4 failed: cannot read image")
    assert "000002.png" in error and "truncated" in error
    assert load_checkpoint(out / "last.pt").extra["iteration"] == 4
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if "loss" in r] == [1, 2, 3, 4]
    assert [r["iteration"] for r in records if "eval_error" in r] == [2, 4]
