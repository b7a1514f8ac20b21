"""The user's path through the CLI: make data, train a few iterations, evaluate, predict; and the demo."""

import json

from maskrcnn.cli import main

FAST = ["model.input.min_size_train=[64]", "model.input.max_size_train=96", "model.input.min_size_test=64",
        "model.input.max_size_test=96", "solver.batch_size=2", "solver.num_workers=1", "solver.log_period=2",
        "solver.warmup_iters=2"]


def test_train_then_evaluate_then_predict(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["data", "shapes", "--num-images", "12", "--image-size", "64", "--output", str(data / "train")]) == 0
    assert main(["data", "shapes", "--num-images", "4", "--image-size", "64", "--seed", "5",
                 "--output", str(data / "val")]) == 0
    run = tmp_path / "run"
    rc = main(["train", "--config", "small", "--data", str(data / "train/annotations.json"),
               "--val", str(data / "val/annotations.json"), "--output", str(run), *FAST, "solver.max_iter=6"])
    assert rc == 0
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "metrics.jsonl", "last.pt", "best.pt", "loss_curve.png"}
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in logged if "loss" in r] == [2, 4, 6]

    # resume with a longer schedule continues from iteration 6
    rc = main(["train", "--resume", "--data", str(data / "train/annotations.json"), "--output", str(run),
               "solver.max_iter=8"])
    assert rc == 0
    assert "resuming from" in capsys.readouterr().err
    assert [r["iteration"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
            if "loss" in r] == [2, 4, 6, 8]

    evaluation = tmp_path / "eval"
    rc = main(["evaluate", "--data", str(data / "val/annotations.json"), "--weights", str(run / "last.pt"),
               "--output", str(evaluation)])
    assert rc == 0
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert set(metrics) == {"bbox", "segm"}
    assert set(metrics["segm"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert (evaluation / "index.html").exists() and (evaluation / "predictions.json").exists()

    out = tmp_path / "pred"
    rc = main(["predict", "--weights", str(run / "last.pt"), "--output", str(out), "--score-threshold", "0",
               str(data / "val/images")])
    assert rc == 0
    results = json.loads((out / "predictions.json").read_text())
    assert {r["category_name"] for r in results} <= {"square", "circle", "triangle"}
    assert len(list(out.glob("*.png"))) == 4

    # predictions written by `predict` score against the ground truth, matched by file name
    rescored = tmp_path / "rescored"
    assert main(["evaluate", "--data", str(data / "val/annotations.json"), "--predictions",
                 str(out / "predictions.json"), "--output", str(rescored), "--no-report"]) == 0
    assert set(json.loads((rescored / "metrics.json").read_text())) == {"bbox", "segm"}


def test_demo_runs_every_step(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--output", str(out), "--iterations", "4", "--train-images", "8", "--val-images", "4"]) == 0
    printed = capsys.readouterr().out
    assert "demo finished" in printed and "mask AP50" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"bbox", "segm"} and metrics["segm"]["AP50"] is not None
    assert (out / "report/index.html").exists() and (out / "run/last.pt").exists()
    assert len(list((out / "overlays").glob("*.png"))) == 4
    # a second run resumes the finished training instead of starting over
    assert main(["demo", "--output", str(out), "--iterations", "4", "--train-images", "8", "--val-images", "4"]) == 0
    assert "already trained to iteration 4" in capsys.readouterr().err
