"""How the fault-injection tests run, damage and compare training runs.

Runs here are the `small` model on 16 images of 64 px for a handful of iterations (seconds each). Processes are
stopped at exact points through ``paused_train.py``, never after a sleep, so the tests hold on a loaded machine.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image
from runs import TINY_OVERRIDES

from maskrcnn.checkpoint import load_checkpoint
from maskrcnn.config import load_config
from maskrcnn.engine.train import TrainJob, train

HERE = Path(__file__).resolve().parent
# The run every interrupted run must end up equal to: 8 iterations, periodic checkpoints at 3 and 6.
RUN = ["solver.max_iter=8", "solver.checkpoint_period=3"]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread, as the children (``Paused``) have: on a busy 2-core machine two threads per process wait
    on each other (a tiny run takes 5x longer), and a run compared bit for bit must use the same count wherever it
    ran."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def train_args(data: dict[str, Path], out: Path, *overrides: str, flags: tuple[str, ...] = ()) -> list[str]:
    """``maskrcnn train`` arguments for a tiny run on the shapes training set (``data["train"]``)."""
    return ["train", "--config", "small", "--data", str(data["train"]), "--output", str(out), *flags,
            *TINY_OVERRIDES, *overrides]  # fmt: skip


def train_job(data: dict[str, Path], out: Path, *overrides: str, **fields) -> TrainJob:
    config = load_config("small", TINY_OVERRIDES + list(overrides))
    return TrainJob(config=config, train_json=data["train"], output_dir=out, progress=False, **fields)


def one_error_line(stderr: str) -> str:
    """The one ``error:`` line of a command's stderr (and no traceback)."""
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


def damaged_copy(json_path: Path, dest: Path, damage: dict[int, str]) -> Path:
    """A copy of a shapes dataset (json + images) in ``dest`` with image ``i`` (json order) damaged as
    ``damage[i]`` says: "truncated" (header intact, pixels cut short), "text" (not an image), "empty", "resized"
    (another size than the json's). Returns the new json."""
    dest.mkdir(parents=True)
    shutil.copytree(json_path.parent / "images", dest / "images")
    shutil.copy(json_path, dest / json_path.name)
    images = json.loads(json_path.read_text())["images"]
    for index, how in damage.items():
        path = dest / images[index]["file_name"]
        data = path.read_bytes()
        if how == "truncated":
            path.write_bytes(data[: len(data) * 6 // 10])
        elif how == "text":
            path.write_text("<html>404 not found</html>")
        elif how == "empty":
            path.write_bytes(b"")
        elif how == "resized":
            Image.open(io.BytesIO(data)).resize((32, 32)).save(path)
    return dest / json_path.name


def loss_records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in ("time", "data_time")} for line in lines]


def assert_same_run(reference: Path, run: Path) -> None:
    """Bit-identical final weights, and the same log, as the uninterrupted ``reference``."""
    a, b = load_checkpoint(reference / "last.pt"), load_checkpoint(run / "last.pt")
    assert a.extra["iteration"] == b.extra["iteration"]
    for key, value in a.state_dict.items():
        assert torch.equal(value, b.state_dict[key]), key
    assert loss_records(reference) == loss_records(run)
    assert not list(run.glob(".*.tmp"))


class Paused:
    """``maskrcnn train`` in a child process (its own session) that waits at a point of ``paused_train.py``."""

    def __init__(self, gate: Path, where: str, iteration: int, args: list[str]):
        self.gate = gate
        command = [sys.executable, str(HERE / "paused_train.py"), str(gate), where, str(iteration), "--", *args]
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")  # see one_thread
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        start_new_session=True)  # fmt: skip

    def wait_until_paused(self, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.gate.exists():
            if self.process.poll() is not None:
                pytest.fail(f"the run ended before its pause point: {self.process.communicate()[1][-3000:]}")
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail("the run did not reach its pause point")
            time.sleep(0.02)

    def release(self) -> None:
        self.gate.unlink()

    def finish(self, timeout: float = 240.0) -> tuple[int, str]:
        """Wait for the exit -> (status, stderr)."""
        try:
            _, stderr = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("the run did not exit")
        return self.process.returncode, stderr

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, 9)
        except ProcessLookupError:
            pass
        self.process.communicate()
