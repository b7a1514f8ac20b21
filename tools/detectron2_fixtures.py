"""Make the detectron2 oracle fixtures: detectron2's own detections for the weights of tests/detectron2_weights.py.

Run it with a Python where detectron2 is installed (not the project's environment, not in CI), from the repository
root; the detectron2 source tree gives the config files:

    /path/to/d2venv/bin/python tools/detectron2_fixtures.py --detectron2-src /path/to/detectron2 \
        --detectron2-commit <the commit that tree was built from> [--arch r50|r101|x101] [--data ../shared/data]

How detectron2 was installed for the committed fixtures (outside the repository, CPU only): a venv of Python
3.11, ``pip install torch==2.14.1 torchvision==0.29.1``, then ``pip install --no-build-isolation <source tree>``
(its C++ extension compiles with g++; MAX_JOBS=1 on a busy machine). ``detectron2.model_zoo`` needs
``pkg_resources``, which current setuptools lacks, so this script takes the config from the source tree instead.
MODEL.WEIGHTS is set to the generated file, so nothing is downloaded.

It regenerates the weights of the architecture (R50-FPN by default; R101-FPN, X101-32x8d-FPN) from their numpy
seed, checks that they have exactly the names and shapes of the model detectron2 builds from its 3x config
(COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml and the like), loads them through
detectron2's checkpointer, runs ``DefaultPredictor`` (MODEL.DEVICE=cpu, everything else as the config says) on
three images of the shared data, and writes tests/fixtures/detectron2_<arch>_fpn_3x.json: per image, every
detection's box (x1, y1, x2, y2 in pixels), score, class (detectron2's contiguous 0-79) and mask (COCO compressed
RLE), with what made them. It prints how many detections and what masks each image gets, so that a weak fixture
(few detections, empty or box-filling masks) shows.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # detectron2_weights
sys.path.insert(0, str(REPO / "src"))  # maskrcnn.data.images: the tests read images the same way

from detectron2_weights import detectron2_fpn_weights, weights_digest, write_model_zoo_pickle  # noqa: E402

from maskrcnn.data.images import read_image  # noqa: E402

# --arch -> detectron2's config, the weights' shape (tests/detectron2_weights.py) and the fixture written
ARCHES = {
    "r50": ("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml", {"depth": 50}, "detectron2_r50_fpn_3x.json"),
    "r101": ("COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x.yaml", {"depth": 101}, "detectron2_r101_fpn_3x.json"),
    "x101": (
        "COCO-InstanceSegmentation/mask_rcnn_X_101_32x8d_FPN_3x.yaml",
        {"depth": 101, "groups": 32, "width_per_group": 8},
        "detectron2_x101_32x8d_fpn_3x.json",
    ),
}
IMAGES = [  # 512 x 512, 640 x 480, 2048 x 1365: the parity tests' sizes
    "car-parts/train/JPEGImages/train1.jpg",
    "coco128-seg/images/train2017/000000000009.jpg",
    "balloon/val/14898532020_ba6199dd22_k.jpg",
]
FIXTURES = REPO / "tests" / "fixtures"
SEED = 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detectron2-src", type=Path, required=True, help="detectron2 source tree (configs/)")
    parser.add_argument("--detectron2-commit", required=True, help="the commit that source tree is")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="the shared data folder")
    parser.add_argument("--arch", choices=sorted(ARCHES), default="r50", help="which model-zoo architecture")
    parser.add_argument("--seed", type=int, default=SEED, help=f"numpy seed of the weights (default {SEED})")
    parser.add_argument("--output", type=Path, help="default: tests/fixtures/detectron2_<arch>_fpn_3x.json")
    args = parser.parse_args()

    import detectron2
    import pycocotools.mask as mask_util
    import torch
    from detectron2.config import get_cfg
    from detectron2.engine import DefaultPredictor

    torch.set_num_threads(2)
    cfg = get_cfg()
    config, shape, output = ARCHES[args.arch]
    args.output = args.output or FIXTURES / output
    cfg.merge_from_file(str(args.detectron2_src / "configs" / config))
    model = detectron2_fpn_weights(**shape, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "model_final_random.pkl"
        write_model_zoo_pickle(weights, model)
        cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", str(weights)])
        predictor = DefaultPredictor(cfg)
    _check_layout(predictor.model.state_dict(), model)

    images = []
    for relative in IMAGES:
        rgb = read_image(args.data / relative)
        with torch.no_grad():
            instances = predictor(np.ascontiguousarray(rgb[:, :, ::-1]))["instances"].to("cpu")  # DefaultPredictor takes BGR
        masks = instances.pred_masks.numpy()
        rles = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
        detections = [
            {
                "box": [round(float(v), 3) for v in box],
                "score": round(float(score), 6),
                "class": int(cls),
                "mask": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
            }
            for box, score, cls, rle in zip(
                instances.pred_boxes.tensor.numpy(), instances.scores.numpy(), instances.pred_classes.numpy(), rles
            )
        ]
        images.append({"file": relative, "height": rgb.shape[0], "width": rgb.shape[1], "detections": detections})
        _describe(relative, instances, masks)

    fixture = {
        "made_by": "tools/detectron2_fixtures.py",
        "detectron2": {"commit": args.detectron2_commit, "version": detectron2.__version__, "config": config,
                       "overrides": {"MODEL.DEVICE": "cpu"}, "predictor": "detectron2.engine.DefaultPredictor"},
        "weights": {"made_by": "tests/detectron2_weights.py detectron2_fpn_weights", **shape, "seed": args.seed,
                    "sha256": weights_digest(model)},
        "environment": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
        "images": images,
    }  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(fixture) + "\n")
    print(f"wrote {args.output} ({args.output.stat().st_size / 1024:.0f} KiB)")


def _check_layout(state: dict, model: dict[str, np.ndarray]) -> None:
    """The generated names and shapes must be exactly detectron2's (its non-persistent buffers aside)."""
    theirs = {k: tuple(v.shape) for k, v in state.items()}
    ours = {k: v.shape for k, v in model.items()}
    missing, extra = sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs))
    wrong = [k for k in theirs.keys() & ours.keys() if theirs[k] != ours[k]]
    if missing or extra or wrong:
        sys.exit(f"layout differs from detectron2's: missing {missing[:5]}, extra {extra[:5]}, wrong shape {wrong[:5]}")
    for k, v in model.items():  # and detectron2 loaded every value
        if not np.array_equal(state[k].numpy(), v):
            sys.exit(f"detectron2 did not load {k} as written")
    print(f"layout: the {len(theirs)} parameters and buffers match detectron2's model, values loaded as written")


def _describe(name: str, instances, masks: np.ndarray) -> None:
    boxes = instances.pred_boxes.tensor.numpy()
    scores = instances.scores.numpy()
    box_area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-6)
    fill = masks.reshape(len(masks), -1).sum(1) / box_area if len(masks) else np.zeros(0)
    classes = np.unique(instances.pred_classes.numpy())
    print(
        f"{name}: {len(scores)} detections, {len(classes)} classes, scores min/median/max "
        f"{scores.min():.3f}/{np.median(scores):.3f}/{scores.max():.3f}, "
        f">0.5: {(scores > 0.5).sum()}, mask fill of box min/median/max {fill.min():.2f}/{np.median(fill):.2f}/"
        f"{fill.max():.2f}, empty masks {(fill == 0).sum()}, box sides {np.median(boxes[:, 2] - boxes[:, 0]):.0f} px"
    )


if __name__ == "__main__":
    main()
