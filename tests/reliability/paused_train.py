"""``maskrcnn train`` in a child process that stops at a chosen point and waits, so that a test can kill or signal it
exactly there, whatever the machine's speed:

    python paused_train.py GATE WHERE ITERATION -- TRAIN-ARGS...

WHERE is ``logged`` (just after the metrics record of ITERATION is written: the middle of the training loop) or
``writing`` (half-way through writing the bytes of last.pt for ITERATION, before the rename that completes it).
There the child creates the file GATE and waits until the test deletes it; then it carries on.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import torch

import maskrcnn.checkpoint
from maskrcnn.cli import main
from maskrcnn.engine.train import _Trainer
from maskrcnn.io import atomic_open


def wait_at(gate: Path) -> None:
    gate.write_text("waiting")
    while gate.exists():
        time.sleep(0.01)


def pause_after_log(gate: Path, iteration: int) -> None:
    append = _Trainer._append_metrics

    def append_then_wait(self, record):
        append(self, record)
        if record.get("iteration") == iteration and "loss" in record:
            wait_at(gate)

    _Trainer._append_metrics = append_then_wait


def pause_mid_write(gate: Path, iteration: int) -> None:
    def save_in_two_halves(path, obj):
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        data = buffer.getvalue()
        with atomic_open(path, "wb") as f:
            f.write(data[: len(data) // 2])
            if Path(path).name == "last.pt" and obj.get("iteration") == iteration:
                f.flush()
                wait_at(gate)
            f.write(data[len(data) // 2 :])

    maskrcnn.checkpoint.atomic_torch_save = save_in_two_halves


if __name__ == "__main__":
    gate, where, iteration, separator, *args = sys.argv[1:]
    assert separator == "--"
    {"logged": pause_after_log, "writing": pause_mid_write}[where](Path(gate), int(iteration))
    sys.exit(main(args))
