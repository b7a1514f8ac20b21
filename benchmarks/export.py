"""ONNX export of the R50-FPN model, then CPU latency of ONNX Runtime against our PyTorch path, interleaved, and the
agreement of their detections (the parity test's matching rule).

    python benchmarks/export.py                     # 3 real images, warm-up + 5 timed rounds
    python benchmarks/export.py --runs 7 --images a.jpg b.jpg

Weights: torchvision's R50-FPN with the parity test's randomised weights, saved to a file and loaded with
``maskrcnn.load``; the export is ``maskrcnn export`` (``maskrcnn.export.export_onnx``) of that predictor. Both run
the whole prediction of ``predict_arrays(score_threshold=0)``: every detection, masks pasted at full size (the ONNX
graph ends at the 28 x 28 mask probabilities, which OnnxPredictor pastes with the same function as PyTorch).
ONNX Runtime runs with its default CPU settings (all graph optimisations, ORT_ENABLE_ALL, which includes its
blocked-layout NCHWc convolutions; one intra-op thread per core); ``--ort-levels all extended basic`` times the
lower optimisation levels side by side too.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from torchvision_oracle import match_detections  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", default=common.DEFAULT_IMAGES, help="paths (relative: to shared data)")
    parser.add_argument("--runs", type=int, default=5, help="timed rounds after one warm-up round (default 5)")
    parser.add_argument("--ort-levels", nargs="+", default=["all"], choices=sorted(ORT_LEVELS),
                        help="ONNX Runtime graph optimisation levels to time (default: all, its default)")
    args = parser.parse_args()

    import torch

    import maskrcnn
    from maskrcnn.data.images import read_image
    from maskrcnn.export import export_onnx

    print(f"command: {common.command_line()}")
    print(f"machine: {common.machine()}")
    arrays = [read_image(p if Path(p).is_absolute() else common.DATA / p) for p in args.images]
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "maskrcnn_resnet50_fpn_randomised.pth"
        torch.save(common.randomised_torchvision_state_dict(), weights)
        ours = maskrcnn.load(weights)
        report = export_onnx(maskrcnn.load(weights), Path(tmp) / "model.onnx")
        print(f"export: {report['bytes'] / 2**20:.1f} MiB, opset {report['opset']}, {report['seconds']:.1f} s")
        runners = {"pytorch (ours)": lambda image: ours.predict_arrays([image], score_threshold=0.0)[0]}
        for level in args.ort_levels:
            start = time.perf_counter()
            onnx_predictor = ort_predictor(report["path"], level)
            print(f"onnxruntime session ({level}): {time.perf_counter() - start:.1f} s to load")
            runners[ORT_NAMES[level]] = lambda image, p=onnx_predictor: p.predict_arrays([image], score_threshold=0.0)[0]
        times, last = common.interleaved_times(runners, arrays, args.runs, keep_outputs=True)

    ours_name = "pytorch (ours)"
    print(f"machine after: {common.machine()}")
    print()
    print("| backend | " + " | ".join(f"{Path(p).name} ms" for p in args.images) + " | ms/image |")
    print("|---|" + "---:|" * (len(args.images) + 1))
    totals = {}
    for name, rounds in times.items():
        per_image_ms = [common.median([r[i] for r in rounds]) * 1000 for i in range(len(arrays))]
        totals[name] = common.median([sum(r) for r in rounds])
        print(f"| {name} | " + " | ".join(f"{ms:.0f}" for ms in per_image_ms)
              + f" | {totals[name] / len(arrays) * 1000:.0f} |")
    print()
    for name in runners:
        if name == ours_name:
            continue
        # per image: the median over rounds of the ratio measured within each round (side by side)
        ratios = [common.median([r[i] / o[i] for r, o in zip(times[name], times[ours_name])]) for i in range(len(arrays))]
        print(f"{name} / pytorch time: {totals[name] / totals[ours_name]:.2f} (median of {args.runs} rounds); per image: "
              + ", ".join(f"{Path(p).name} ({a.shape[1]}x{a.shape[0]}) {x:.2f}" for p, a, x in zip(args.images, arrays, ratios)))
        matched = total = 0
        ious: list[float] = []
        for i in range(len(arrays)):
            m, t, iou, _ = match_detections(last[ours_name, i], last[name, i])
            matched, total, ious = matched + m, total + t, ious + iou
        print(f"  {name} vs pytorch detections: matched {matched}/{total}, worst mask IoU {min(ious):.4f}, "
              f"{sum(i > 0.98 for i in ious)}/{len(ious)} matched masks with IoU > 0.98, median {common.median(ious):.4f}")


ORT_LEVELS = {"all": "ORT_ENABLE_ALL", "extended": "ORT_ENABLE_EXTENDED", "basic": "ORT_ENABLE_BASIC"}
ORT_NAMES = {"all": "onnxruntime", "extended": "onnxruntime (extended)", "basic": "onnxruntime (basic)"}


def ort_predictor(path: Path, level: str):
    """An OnnxPredictor of the exported file whose session runs at graph optimisation ``level``."""
    import onnxruntime as ort

    from maskrcnn.export import OnnxPredictor

    default = OnnxPredictor.from_file(path)
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_LEVELS[level])
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    return OnnxPredictor(session, class_names=default.class_names, category_ids=default.category_ids,
                         mask_threshold=default.mask_threshold, mask_paste=default.mask_paste)


if __name__ == "__main__":
    main()
