import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from runs import TINY_OVERRIDES
from maskrcnn.checkpoint import load_checkpoint, read_starting_weights
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
    # A session of its own, so that a hang kills torchrun's workers too and leaves nothing running.
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail("two-process training did not finish in 240 s")
    assert process.returncode == 0, stderr[-3000:]
    assert stdout.count("trained to iteration 4") == 1
    records = losses(out)
    assert [r["iteration"] for r in records] == [1, 2, 3, 4]  # rank 0 alone writes the log
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt.extra["iteration"] == 4
    assert not any(k.startswith("module.") for k in ckpt.state_dict)  # saved unwrapped from DDP


def test_training_from_scratch_unfreezes_the_backbone(shapes_data, tmp_path, capsys):
    out = tmp_path / "scratch"
    train(job(shapes_data, out, "solver.max_iter=1", "model.backbone.norm=frozen_bn", "model.backbone.freeze_at=2"))
    assert "training from scratch" in capsys.readouterr().err
    saved = load_checkpoint(out / "last.pt").config.model.backbone
    assert saved.norm == "bn" and saved.freeze_at == 0


def fine_tune_one_step(preset_name: str, weights, shapes_data, tmp_path, overrides=()):
    """One training iteration at learning rate 0 from ``weights`` under a preset (tiny sizes, then ``overrides``);
    the checkpoint."""
    config = load_config(preset_name, TINY_OVERRIDES + ["solver.max_iter=1", "solver.base_lr=0.0",
                                                        "solver.weight_decay=0.0", *overrides])
    out = tmp_path / "finetune"
    train(TrainJob(config=config, train_json=shapes_data["train"], output_dir=out, init_weights=weights,
                   progress=False))
    return load_checkpoint(out / "last.pt")


def test_fine_tuning_from_a_detectron2_file_keeps_its_conventions_and_resizes_the_class_layers(shapes_data, tmp_path):
    from detectron2_weights import detectron2_fpn_weights, write_model_zoo_pickle

    model = detectron2_fpn_weights(depth=50, seed=0)
    weights = tmp_path / "model_final_random.pkl"
    write_model_zoo_pickle(weights, model)
    tuned = fine_tune_one_step("d2_r50_fpn", weights, shapes_data, tmp_path, ["model.backbone.freeze_at=1"])
    assert tuned.config.model.backbone.stride_in_1x1 and tuned.config.model.input.resize == "detectron2"
    assert tuned.config.model.input.min_size_train == (64,)  # the given preset's overrides stay
    assert tuned.config.model.backbone.freeze_at == 1
    assert tuned.state_dict["roi_heads.box_predictor.cls_score.weight"].shape == (4, 1024)  # 3 shapes + background
    assert tuned.state_dict["roi_heads.mask_head.predictor.weight"].shape[0] == 4
    # with a zero learning rate everything else is exactly detectron2's (the stem reading RGB)
    assert torch.equal(tuned.state_dict["backbone.bottom_up.conv1.weight"],
                       torch.from_numpy(model["backbone.bottom_up.stem.conv1.weight"][:, ::-1].copy()))
    assert torch.equal(tuned.state_dict["backbone.bottom_up.layer4.2.conv3.weight"],
                       torch.from_numpy(model["backbone.bottom_up.res5.2.conv3.weight"]))


def test_fine_tuning_from_a_torchvision_checkpoint_resizes_the_class_layers(shapes_data, tmp_path):
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    torch.manual_seed(0)
    reference = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    weights = tmp_path / "tv.pth"
    torch.save(reference.state_dict(), weights)
    tuned = fine_tune_one_step("r50_fpn", weights, shapes_data, tmp_path)
    assert tuned.config.model.backbone.norm == "frozen_bn" and tuned.config.model.backbone.frozen_bn_eps == 0.0
    assert tuned.state_dict["roi_heads.box_predictor.cls_score.weight"].shape == (4, 1024)  # 3 shapes + background
    assert tuned.state_dict["roi_heads.mask_head.predictor.weight"].shape[0] == 4
    # with a zero learning rate everything else is exactly torchvision's
    source = reference.state_dict()
    assert torch.equal(tuned.state_dict["backbone.bottom_up.layer4.2.conv3.weight"], source["backbone.body.layer4.2.conv3.weight"])
    assert torch.equal(tuned.state_dict["roi_heads.box_head.fc2.weight"], source["roi_heads.box_head.fc7.weight"])
    assert torch.equal(tuned.state_dict["roi_heads.mask_head.deconv.weight"],
                       source["roi_heads.mask_predictor.conv5_mask.weight"])


def test_fine_tuning_from_a_torchvision_v2_checkpoint_resizes_the_class_layers(shapes_data, tmp_path):
    """A v2 file fixes its architecture (any other config is replaced by it); under the r50_fpn_v2 preset the given
    config stays, the class layers are resized and every other convolution starts as the file's."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn_v2

    torch.manual_seed(0)
    reference = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=91)
    weights = tmp_path / "tv2.pth"
    torch.save(reference.state_dict(), weights)
    needed = read_starting_weights(weights).model_config
    assert (needed.rpn.head_convs, needed.roi_heads.box_head_convs, needed.backbone.fpn_norm) == (2, 4, "bn")
    assert needed.backbone == load_config("r50_fpn_v2").model.backbone != load_config("r50_fpn").model.backbone
    tuned = fine_tune_one_step("r50_fpn_v2", weights, shapes_data, tmp_path)
    assert tuned.config.model.input.min_size_train == (64,)  # the given preset's overrides stay
    assert tuned.config.model.backbone.frozen_bn_eps == 1e-5 and tuned.config.model.num_classes == 3
    assert tuned.state_dict["roi_heads.box_predictor.cls_score.weight"].shape == (4, 1024)  # 3 shapes + background
    source = reference.state_dict()
    for ours, theirs in (("roi_heads.box_head.convs.3.weight", "roi_heads.box_head.3.0.weight"),
                         ("roi_heads.box_head.fc1.weight", "roi_heads.box_head.5.weight"),
                         ("rpn.head.extra_convs.0.weight", "rpn.head.conv.1.0.weight"),
                         ("backbone.fpn.output_convs.2.weight", "backbone.fpn.layer_blocks.2.0.weight")):
        assert torch.equal(tuned.state_dict[ours], source[theirs]), ours


def test_weights_and_a_config_that_do_not_fit_are_refused_before_training(shapes_data, tmp_path):
    """torchvision weights under a detectron2 preset (stride in the 1x1, std 1) would start from wrong features; a
    detectron2 file under another preset replaces the model config, so model keys the user gave would be lost."""
    from detectron2_weights import detectron2_fpn_weights, write_model_zoo_pickle
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    torch.manual_seed(0)
    torchvision_file = tmp_path / "tv.pth"
    torch.save(maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91).state_dict(), torchvision_file)
    d2_file = tmp_path / "model_final_random.pkl"
    write_model_zoo_pickle(d2_file, detectron2_fpn_weights(depth=50, seed=0))
    cases = [
        ("d2_r50_fpn", torchvision_file, frozenset(), "model.backbone.stride_in_1x1=True"),
        ("r50_fpn", d2_file, frozenset({"model.backbone.freeze_at"}), "--config d2_r50_fpn"),
    ]
    for preset_name, weights, given, message in cases:
        out = tmp_path / f"run-{preset_name}"
        config = load_config(preset_name, TINY_OVERRIDES + ["solver.max_iter=1"])
        with pytest.raises(UserError, match=re.escape(message)) as error:
            train(TrainJob(config=config, train_json=shapes_data["train"], output_dir=out, init_weights=weights,
                           given_keys=given, progress=False))
        assert str(weights) in str(error.value)
        assert not (out / "last.pt").exists()
