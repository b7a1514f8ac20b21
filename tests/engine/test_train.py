import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from runs import TINY_OVERRIDES
from maskrcnn.checkpoint import load_checkpoint
from maskrcnn.cli import main
from maskrcnn.config import load_config
from maskrcnn.engine import train as train_module
from maskrcnn.engine.train import NonFiniteLoss, TrainJob, train
from maskrcnn.errors import UserError


def job(data, out, *overrides, resume=False, val=False):
    config = load_config("small", TINY_OVERRIDES + list(overrides))
    return TrainJob(config=config, train_json=data["train"], val_json=data["val"] if val else None,
                    output_dir=out, resume=resume, progress=False)


def losses(run_dir):
    return [
        {k: v for k, v in json.loads(line).items() if k.startswith("loss") or k in ("iteration", "lr")}
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        if "loss" in line
    ]


def test_resume_after_a_kill_ends_with_the_same_weights(shapes_data, tmp_path):
    overrides = ("solver.max_iter=12", "solver.checkpoint_period=3")
    reference = tmp_path / "uninterrupted"
    train(job(shapes_data, reference, *overrides))

    killed = tmp_path / "killed"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "maskrcnn", "train", "--config", "small", "--data", str(shapes_data["train"]),
           "--output", str(killed), *TINY_OVERRIDES, *overrides]
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it somewhere after the second checkpoint, mid-way through the run
        metrics = killed / "metrics.jsonl"
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 7:
            break
        if process.poll() is not None:
            pytest.fail(f"training exited early: {process.stderr.read().decode()}")
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    stopped_at = load_checkpoint(killed / "last.pt").extra["iteration"]
    assert 3 <= stopped_at < 12

    train(job(shapes_data, killed, *overrides, resume=True))
    a, b = load_checkpoint(reference / "last.pt"), load_checkpoint(killed / "last.pt")
    assert a.extra["iteration"] == b.extra["iteration"] == 12
    for key, value in a.state_dict.items():
        assert torch.equal(value, b.state_dict[key]), key
    assert losses(reference) == losses(killed)  # the log was cut back to the checkpoint and continued
    assert not list(killed.glob(".*.tmp"))


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(shapes_data, tmp_path, monkeypatch):
    real_build = train_module.build_model

    def build_with_nan(config):
        model = real_build(config)
        forward = model.forward
        calls = {"n": 0}

        def poisoned(images, targets=None):
            out = forward(images, targets)
            if model.training:
                calls["n"] += 1
                if calls["n"] == 5:
                    out["loss_mask"] = out["loss_mask"] * float("nan")
            return out

        model.forward = poisoned
        return model

    monkeypatch.setattr(train_module, "build_model", build_with_nan)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLoss, match=r"iteration 5 \(loss_mask\).*last good checkpoint .*iteration 4"):
        train(job(shapes_data, out, "solver.max_iter=10", "solver.checkpoint_period=2"))
    kept = load_checkpoint(out / "last.pt")
    assert kept.extra["iteration"] == 4
    assert all(torch.isfinite(v).all() for v in kept.state_dict.values() if v.is_floating_point())
    assert (out / "loss_curve.png").exists()


def test_cli_errors_are_one_line(shapes_data, tmp_path, capsys):
    rc = main(["train", "--data", str(shapes_data["train"]), "--output", str(tmp_path / "r"), "solver.lr=0.1"])
    assert rc == 2 and "unknown config key 'solver.lr'" in capsys.readouterr().err
    rc = main(["train", "--data", str(tmp_path / "none.json"), "--output", str(tmp_path / "r")])
    assert rc == 2 and "none.json" in capsys.readouterr().err
    rc = main(["train", "--data", str(shapes_data["train"]), "--output", str(tmp_path / "fresh"), "--resume"])
    assert rc == 2 and "no checkpoint to resume from" in capsys.readouterr().err


def test_validation_writes_best_and_eval_records(shapes_data, tmp_path):
    out = tmp_path / "run"
    summary = train(job(shapes_data, out, "solver.max_iter=4", "solver.eval_period=2", val=True))
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"eval"' in line]
    assert [e["iteration"] for e in evals] == [2, 4]
    assert set(evals[-1]["eval"]) == {"bbox", "segm"} and summary["eval"] == evals[-1]["eval"]
    best = load_checkpoint(out / "best.pt")
    assert best.extra["iteration"] in (2, 4) and best.class_names == ["square", "circle", "triangle"]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_two_processes_on_gloo(shapes_data, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "maskrcnn", "train", "--config", "small", "--data", str(shapes_data["train"]),
           "--output", str(out), *TINY_OVERRIDES, "solver.max_iter=4", "solver.checkpoint_period=2"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("trained to iteration 4") == 1
    records = losses(out)
    assert [r["iteration"] for r in records] == [1, 2, 3, 4]  # rank 0 alone writes the log
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt.extra["iteration"] == 4
    assert not any(k.startswith("module.") for k in ckpt.state_dict)  # saved unwrapped from DDP
