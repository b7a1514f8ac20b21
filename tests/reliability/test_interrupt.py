"""Item 3: a run stopped by a signal or killed at any point, even in the middle of writing a checkpoint, resumes
to the same weights as a run never stopped. The uninterrupted run (``reference_run``) takes 8 iterations with
periodic checkpoints at 3 and 6; ``Paused`` holds the child at an exact point while the test signals or kills it.
"""

from __future__ import annotations

import os
import random
import signal

import pytest
from faults import RUN, Paused, assert_same_run, train_args, train_job

from maskrcnn.checkpoint import load_checkpoint
from maskrcnn.engine.train import train


def _resume(data, out):
    train(train_job(data, out, *RUN, resume=True))


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_signal_saves_the_iteration_in_hand_and_resume_is_exact(name, shapes_data, reference_run, tmp_path):
    iteration = random.randint(1, 7)  # mostly between periodic checkpoints
    signum = getattr(signal, name)
    out = tmp_path / "run"
    # SIGINT as Ctrl-C sends it: to the whole process group, the loader's worker included.
    workers = 1 if name == "SIGINT" else 0
    run = Paused(tmp_path / "gate", "logged", iteration,
                 train_args(shapes_data, out, *RUN, f"solver.num_workers={workers}"))  # fmt: skip
    run.wait_until_paused()
    if name == "SIGINT":
        os.killpg(run.process.pid, signum)
    else:
        run.process.send_signal(signum)
    run.release()
    status, stderr = run.finish()
    where = f"{name} after iteration {iteration}"
    assert status == 128 + signum, (where, stderr[-2000:])
    assert f"interrupted: stopped by {where}; saved {out / 'last.pt'}" in stderr and "Traceback" not in stderr
    assert load_checkpoint(out / "last.pt").extra["iteration"] == iteration, where
    _resume(shapes_data, out)
    assert_same_run(reference_run, out)


def test_sigterm_during_a_checkpoint_write(shapes_data, reference_run, tmp_path):
    out = tmp_path / "run"
    run = Paused(tmp_path / "gate", "writing", 6, train_args(shapes_data, out, *RUN))
    run.wait_until_paused()  # half of last.pt for iteration 6 is in its temp file
    run.process.send_signal(signal.SIGTERM)
    run.release()
    status, stderr = run.finish()
    assert status == 128 + signal.SIGTERM, stderr[-2000:]
    assert "stopped by SIGTERM after iteration 6" in stderr  # the write finished, and was not repeated
    assert load_checkpoint(out / "last.pt").extra["iteration"] == 6
    _resume(shapes_data, out)
    assert_same_run(reference_run, out)


def test_kill_9_at_a_random_iteration(shapes_data, reference_run, tmp_path):
    iteration = random.randint(4, 7)
    out = tmp_path / "run"
    run = Paused(tmp_path / "gate", "logged", iteration, train_args(shapes_data, out, *RUN))
    run.wait_until_paused()
    run.kill()
    # the latest periodic checkpoint before the pause (iteration k's is written after its log record)
    assert load_checkpoint(out / "last.pt").extra["iteration"] == (iteration - 1) // 3 * 3, iteration
    _resume(shapes_data, out)
    assert_same_run(reference_run, out)  # the log was cut back to the checkpoint and continued


def test_kill_9_during_a_checkpoint_write(shapes_data, reference_run, tmp_path):
    out = tmp_path / "run"
    run = Paused(tmp_path / "gate", "writing", 6, train_args(shapes_data, out, *RUN))
    run.wait_until_paused()
    run.kill()
    assert load_checkpoint(out / "last.pt").extra["iteration"] == 3  # the previous one, whole
    assert len(list(out.glob(".last.pt.*.tmp"))) == 1  # the half-written one
    _resume(shapes_data, out)
    assert_same_run(reference_run, out)
