"""How fast float32 arithmetic lets ours be: the multiply-adds of each image against this CPU's measured peak, beside
torchvision's and our measured times, in one run.

    python benchmarks/bound.py                 # torchvision's maskrcnn_resnet50_fpn, 3 real images, 3 timed rounds
    python benchmarks/bound.py --arch v2       # maskrcnn_resnet50_fpn_v2

Multiply-adds (MAC) are those of torchvision's forward on the image, counted by ``torch.utils.flop_counter`` (its
convolutions and matrix products; RoIAlign, NMS and pasting are not counted), less the class maps that ours does not
compute: the mask predictor's last 1x1 convolution makes all 91 for every detection, ours each detection's own. That
is the arithmetic both run when they compute the convolutions directly; Winograd convolutions (ours uses NNPACK's
for the FPN outputs and the RPN head) trade some multiplies for transforms.

The peak is the fastest of two float32 products timed here: a 2048 x 2048 x 2048 matrix product and a 3x3
convolution of the mask head's shape (100 x 256 x 14 x 14, channels-last). "time at peak" is the MAC count at that
rate, with nothing else done; "best ratio" is torchvision's measured time over it: the speed-up ours would have if
every step ran at the peak. "needed for goal" is the share of the peak at which ours would have to run the whole
forward, every step that is not a matrix product included, to be ``--goal`` times faster than torchvision.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from inference import load_models, read_images  # noqa: E402

# torchvision module names -> the stage they belong to in the printed breakdown
STAGES = {
    "backbone.body": "ResNet",
    "backbone.fpn": "FPN",
    "rpn.head": "RPN head",
    "roi_heads.box_head": "box head",
    "roi_heads.box_predictor": "box head",
    "roi_heads.mask_head": "mask head",
    "roi_heads.mask_predictor.conv5_mask": "mask head",  # the 2x2 transposed convolution, ours computes it too
    "roi_heads.mask_predictor.mask_fcn_logits": "mask logits",  # 91 class maps; ours: one per detection
}


def peak_gmacs(repeats: int = 5) -> dict[str, float]:
    """Best float32 GMAC/s of a large matrix product and of a mask-head 3x3 convolution (channels-last)."""
    import torch
    import torch.nn.functional as F

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    x = torch.randn(100, 256, 14, 14).contiguous(memory_format=torch.channels_last)
    w = torch.randn(256, 256, 3, 3).contiguous(memory_format=torch.channels_last)
    cases = {
        "matmul 2048^3": (lambda: torch.mm(a, b), 2048**3),
        "conv 3x3, 100x256x14x14": (lambda: F.conv2d(x, w, padding=1), 100 * 14 * 14 * 256 * 256 * 9),
    }
    rates = {}
    with torch.inference_mode():
        for name, (fn, macs) in cases.items():
            fn()
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - start)
            rates[name] = macs / best / 1e9
    return rates


def count_macs(model, image) -> dict[str, float]:
    """stage -> GMAC of torchvision's forward on ``image`` (ndarray[H, W, 3] uint8), and "total"."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    tensor = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model([tensor])
    by_module = counter.get_flop_counts()
    stages: dict[str, float] = {}
    for name, stage in STAGES.items():
        flops = sum(by_module.get(f"{type(model).__name__}.{name}", {}).values())
        stages[stage] = stages.get(stage, 0.0) + flops / 2e9
    stages["total"] = counter.get_total_flops() / 2e9
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", default=common.DEFAULT_IMAGES, help="paths (relative: to shared data)")
    parser.add_argument("--runs", type=int, default=3, help="timed rounds after one warm-up round (default 3)")
    parser.add_argument("--arch", choices=("v1", "v2"), default="v1")
    parser.add_argument("--goal", type=float, help="speed-up to test against (default: 2 for v1, 1.8 for v2)")
    args = parser.parse_args()
    goal = args.goal or (2.0 if args.arch == "v1" else 1.8)

    import torch

    print(f"command: {common.command_line()}")
    print(f"machine: {common.machine()}")
    rates = peak_gmacs()
    peak = max(rates.values())
    print("float32 peak: " + ", ".join(f"{name} {rate:.0f} GMAC/s" for name, rate in rates.items()))

    state = common.randomised_torchvision_state_dict(args.arch)
    arrays = read_images(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "randomised.pth"
        torch.save(state, weights)
        runners = load_models(["ours", "torchvision"], weights, state, args.arch)
    reference = common.torchvision_model(state, norm="frozen" if args.arch == "v1" else "bn", arch=args.arch)
    macs = [count_macs(reference, image) for image in arrays]
    del reference

    times, _ = common.interleaved_times(runners, arrays, args.runs)
    print(f"machine after: {common.machine()}")
    print()
    print("| image | GMAC (torchvision) | GMAC ours needs | torchvision ms | ours ms | measured ratio | "
          f"torchvision % of peak | ours % of peak | time at peak ms | best ratio | needed for {goal:g}x |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for i, (path, image, count) in enumerate(zip(args.images, arrays, macs)):
        tv_s = common.median([r[i] for r in times["torchvision"]])
        ours_s = common.median([r[i] for r in times["ours"]])
        # ours computes one class map per detection where torchvision computes them all (91 classes)
        needed = count["total"] - count["mask logits"] * (1 - 1 / 91)
        at_peak = needed / peak
        print(f"| {Path(path).name} ({image.shape[1]}x{image.shape[0]}) | {count['total']:.1f} | {needed:.1f} | "
              f"{tv_s * 1e3:.0f} | {ours_s * 1e3:.0f} | {tv_s / ours_s:.2f}x | "
              f"{100 * count['total'] / tv_s / peak:.0f}% | {100 * needed / ours_s / peak:.0f}% | "
              f"{at_peak * 1e3:.0f} | {tv_s / at_peak:.2f}x | {100 * at_peak / (tv_s / goal):.0f}% |")
    print()
    print("GMAC by stage (torchvision's forward): " + "; ".join(
        f"{Path(p).name}: " + ", ".join(f"{k} {v:.1f}" for k, v in c.items() if k != "total")
        for p, c in zip(args.images, macs)
    ))


if __name__ == "__main__":
    main()
