"""CPU inference, ours against detectron2's DefaultPredictor on the same model-zoo file and images, interleaved in
one run, with the parity of the two outputs and of their FPN maps.

Needs a Python where detectron2 is installed (not the project's environment, not CI; tools/detectron2_fixtures.py
says how it was built), plus urllib3 and matplotlib for maskrcnn; run from the repository root:

    /path/to/d2venv/bin/python benchmarks/vs_detectron2.py --detectron2-src /path/to/detectron2 [--arch r50|r101|x101]

Weights: tests/detectron2_weights.py's for the architecture (numpy seed 0, the oracle fixtures' weights), written
as a model-zoo ``.pkl``; detectron2 loads it through its checkpointer with the architecture's 3x config
(MODEL.DEVICE=cpu), ours through ``maskrcnn.load``. Both return every detection (score > 0.05, top 100) with its
full-image mask: detectron2's ``DefaultPredictor`` on the BGR image, ours ``Predictor.predict_arrays`` on the RGB
one (the BGR copy made before the timing). torch's default threads (one per core). Each round times both on every
image, which goes first alternating; a model's figure for an image is the median
over rounds. Also printed: how many of detectron2's detections ours matches by the parity rule
(tests/torchvision_oracle.py, as tests/zoo/test_detectron2_parity.py), and the largest difference between the two
backbones' FPN maps on the second image (640x480 by default) resized to 800x1088, relative to the maps'
largest value.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tools"))  # detectron2_fixtures: the architectures' configs and shapes

import common  # noqa: E402  (also puts tests/ on the path: torchvision_oracle)
from detectron2_fixtures import ARCHES  # noqa: E402  (also puts tests/ and src/ on the path)


def fpn_difference(d2_model, ours, image) -> float:
    """Largest |detectron2 - ours| over the FPN maps (p2-p6), relative to their largest |value|, for one image
    (ndarray[H, W, 3] RGB uint8) resized to 800 x 1088 and rounded: both backbones see the same pixels."""
    import torch
    import torch.nn.functional as F

    rgb = torch.from_numpy(image).permute(2, 0, 1).float()
    # (3, H, W) -> (3, 800, 1088): what both make of a 640 x 480 image; 800 and 1088 are multiples of 32 (no padding)
    rgb = F.interpolate(rgb[None], size=(800, 1088), mode="bilinear", align_corners=False)[0].round().clamp(0, 255)
    with torch.no_grad():
        theirs = d2_model.backbone(((rgb.flip(0) - d2_model.pixel_mean) / d2_model.pixel_std)[None])
        mine = ours.model.backbone(((rgb / 255 - ours.model.pixel_mean) / ours.model.pixel_std)[None])
    worst = 0.0
    for theirs_map, mine_map in zip(theirs.values(), mine, strict=True):  # p2 ... p6 both (ours: a list)
        worst = max(worst, float((theirs_map - mine_map).abs().max() / theirs_map.abs().max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detectron2-src", type=Path, required=True, help="detectron2 source tree (configs/)")
    parser.add_argument("--arch", choices=sorted(ARCHES), default="r50")
    parser.add_argument("--images", nargs="+", default=common.DEFAULT_IMAGES, help="paths (relative: to shared data)")
    parser.add_argument("--runs", type=int, default=3, help="timed rounds after one warm-up round (default 3)")
    args = parser.parse_args()

    import numpy as np
    import torch
    from detectron2.config import get_cfg
    from detectron2.engine import DefaultPredictor
    from detectron2_weights import detectron2_fpn_weights, write_model_zoo_pickle
    from torchvision_oracle import Detections, match_detections

    import maskrcnn
    from maskrcnn.data.images import read_image

    print(f"command: {common.command_line()}")
    print(f"machine: {common.machine()}")
    config, shape, _ = ARCHES[args.arch]
    cfg = get_cfg()
    cfg.merge_from_file(str(args.detectron2_src / "configs" / config))
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / f"model_final_random_{args.arch}.pkl"
        write_model_zoo_pickle(weights, detectron2_fpn_weights(**shape, seed=0))
        cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", str(weights)])
        d2 = DefaultPredictor(cfg)  # loads MODEL.WEIGHTS through detectron2's checkpointer
        ours = maskrcnn.load(weights, device="cpu")
    print(f"architecture: {config} ({shape}), weights seed 0")

    arrays = [read_image(p if Path(p).is_absolute() else common.DATA / p) for p in args.images]
    # each image as (RGB, BGR): DefaultPredictor takes BGR, converted here outside the timing
    pairs = [(rgb, np.ascontiguousarray(rgb[:, :, ::-1])) for rgb in arrays]
    runners = {  # DefaultPredictor runs under no_grad itself; ours under inference_mode
        "detectron2": lambda pair: d2(pair[1])["instances"].to("cpu"),
        "ours": lambda pair: ours.predict_arrays([pair[0]], score_threshold=0.0)[0],
    }
    times, outputs = common.interleaved_times(runners, pairs, args.runs, keep_outputs=True)
    print(f"machine after: {common.machine()}")

    matched = total = 0
    mask_ious: list[float] = []
    for i in range(len(arrays)):
        instances = outputs["detectron2", i]
        expected = Detections(
            boxes=instances.pred_boxes.tensor.numpy(),
            labels=instances.pred_classes.numpy() + 1,  # detectron2's contiguous 0-79 -> our labels 1-80
            scores=instances.scores.numpy(),
            masks=instances.pred_masks.numpy(),
        )
        match = match_detections(expected, outputs["ours", i], mask_size=None)
        matched, total, mask_ious = matched + match.matched, total + match.total, mask_ious + match.mask_ious

    print()
    print("| image | detectron2 ms | ours ms | ratio |")
    print("|---|---:|---:|---:|")
    # name -> each image's median seconds over the rounds
    medians = {name: [common.median([r[i] for r in rounds]) for i in range(len(arrays))]
               for name, rounds in times.items()}  # fmt: skip
    for path, image, t, o in zip(args.images, arrays, medians["detectron2"], medians["ours"]):
        name = f"{Path(path).name} ({image.shape[1]}x{image.shape[0]})"
        print(f"| {name} | {t * 1e3:.0f} | {o * 1e3:.0f} | {t / o:.2f}x |")
    total_d2, total_ours = sum(medians["detectron2"]), sum(medians["ours"])
    print(f"\nms/image: detectron2 {total_d2 / len(arrays) * 1e3:.0f}, ours {total_ours / len(arrays) * 1e3:.0f}; "
          f"speed-up of ours {total_d2 / total_ours:.2f}x")
    worst = f"worst mask IoU {min(mask_ious):.4f}" if mask_ious else "no masks compared"
    print(f"parity: ours matches {matched}/{total} of detectron2's detections, {worst}")
    fpn_image = arrays[1] if len(arrays) > 1 else arrays[0]
    print(f"FPN maps: largest difference {fpn_difference(d2.model, ours, fpn_image):.1e} of their scale")


if __name__ == "__main__":
    main()
