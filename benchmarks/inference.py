"""CPU inference, ours against torchvision's maskrcnn_resnet50_fpn (or _v2), same weights and images, interleaved in
one run.

    python benchmarks/inference.py                  # 3 real images, warm-up + 5 timed rounds, peak RSS of each
    python benchmarks/inference.py --runs 7 --images a.jpg b.jpg
    python benchmarks/inference.py --arch v2        # maskrcnn_resnet50_fpn_v2 against ours loading its file

Weights: torchvision's R50-FPN with the parity test's randomised weights (tests/model/test_parity_torchvision.py),
saved to a file and loaded into ours through ``maskrcnn.load`` (so ours runs what a user's Predictor runs).
torchvision is built as ``maskrcnn_resnet50_fpn(weights="COCO_V1")`` builds it (FrozenBatchNorm2d, eps 0) and, for
reference, as the parity test's module (BatchNorm2d in eval mode). With ``--arch v2``: the v2 parity test's weights
(tests/model/test_parity_torchvision_v2.py), and torchvision's v2 as ``maskrcnn_resnet50_fpn_v2(weights="COCO_V1")``
builds it (BatchNorm2d in eval mode throughout, the one way it is built: model "torchvision").

Both return every detection (box score > 0.05, NMS, top 100) with a full-image mask: torchvision's model is called
on the image as a float tensor, ours through ``Predictor.predict_arrays(score_threshold=0)`` (numpy out). Each round
times every model on every image, the order of the models rotating from round to round; the figure of a model is
the median over rounds of its total time for the images. Peak memory is the RSS high-water mark of a fresh process
per model during inference on the same images (after loading and one warm-up pass).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

MODELS = ("ours", "torchvision", "torchvision_bn")


def load_models(names: list[str], weights_path: Path, state_dict, arch: str = "v1") -> dict:
    """name -> callable(image ndarray[H, W, 3] uint8) running that model on one image."""
    import torch

    import maskrcnn

    runners = {}
    for name in names:
        if name == "ours":
            predictor = maskrcnn.load(weights_path, device="cpu")
            runners[name] = lambda image, p=predictor: p.predict_arrays([image], score_threshold=0.0)[0]
        else:
            norm = "frozen" if name == "torchvision" and arch == "v1" else "bn"
            model = common.torchvision_model(state_dict, norm=norm, arch=arch)

            def run(image, model=model):
                with torch.inference_mode():
                    return model([torch.from_numpy(image).permute(2, 0, 1).float() / 255.0])[0]

            runners[name] = run
    return runners


def read_images(paths: list[str]):
    from maskrcnn.data.images import read_image

    return [read_image(p if Path(p).is_absolute() else common.DATA / p) for p in paths]


def memory_child(name: str, images: list[str], weights: str, arch: str) -> None:
    """Fresh process: load one model, warm up, reset the RSS high-water mark, run every image; print JSON."""
    import torch

    state = torch.load(weights, weights_only=True) if name != "ours" else None
    runner = load_models([name], Path(weights), state, arch)[name]
    del state
    arrays = read_images(images)
    runner(arrays[0])
    loaded_rss, _ = common.rss_mib()
    exact = common.reset_peak_rss()
    for image in arrays:
        runner(image)
    rss, peak = common.rss_mib()
    if not exact:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"model": name, "loaded_rss_mib": loaded_rss, "peak_rss_mib": peak, "hwm_reset": exact}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", default=common.DEFAULT_IMAGES, help="paths (relative: to shared data)")
    parser.add_argument("--runs", type=int, default=5, help="timed rounds after one warm-up round (default 5)")
    parser.add_argument("--arch", choices=("v1", "v2"), default="v1",
                        help="torchvision's maskrcnn_resnet50_fpn (v1, default) or maskrcnn_resnet50_fpn_v2")
    parser.add_argument("--models", nargs="+", choices=MODELS,
                        help="default: all for v1; ours and torchvision for v2 (torchvision_bn is the same model)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS subprocesses")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.models is None:
        args.models = list(MODELS) if args.arch == "v1" else ["ours", "torchvision"]
    if args.arch == "v2" and "torchvision_bn" in args.models:
        parser.error("--arch v2: torchvision's v2 model has BatchNorm2d only; use --models ours torchvision")
    if args.memory_child:
        memory_child(args.memory_child, args.images, args.weights, args.arch)
        return

    import torch

    print(f"command: {common.command_line()}")
    print(f"machine: {common.machine()}")
    print(f"architecture: torchvision's maskrcnn_resnet50_fpn{'_v2' if args.arch == 'v2' else ''}")
    state = common.randomised_torchvision_state_dict(args.arch)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / f"maskrcnn_resnet50_fpn{'_v2' if args.arch == 'v2' else ''}_randomised.pth"
        torch.save(state, weights)
        runners = load_models(args.models, weights, state, args.arch)
        arrays = read_images(args.images)
        print("images: " + ", ".join(f"{p} ({a.shape[1]}x{a.shape[0]})" for p, a in zip(args.images, arrays)))

        times, _ = common.interleaved_times(runners, arrays, args.runs)  # name -> per round, per image seconds

        del runners
        memory = {}
        if not args.no_memory:
            for name in args.models:
                memory[name] = common.peak_rss_of(
                    ["--memory-child", name, "--weights", str(weights), "--arch", args.arch, "--images", *args.images]
                )

    print(f"machine after: {common.machine()}")
    print()
    header = "| model | " + " | ".join(f"{Path(p).name} ms" for p in args.images) + " | ms/image | peak RSS MiB |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    totals = {}
    for name, rounds in times.items():
        per_image_ms = [common.median([r[i] for r in rounds]) * 1000 for i in range(len(args.images))]
        totals[name] = common.median([sum(r) for r in rounds])
        peak = f"{memory[name]['peak_rss_mib']:.0f}" if name in memory else "-"
        cells = " | ".join(f"{ms:.0f}" for ms in per_image_ms)
        print(f"| {name} | {cells} | {totals[name] / len(args.images) * 1000:.0f} | {peak} |")
    print()
    if "ours" in totals:
        for ref in ("torchvision", "torchvision_bn"):
            if ref in totals:
                print(f"speed-up of ours over {ref}: {totals[ref] / totals['ours']:.2f}x (median of {args.runs} rounds)")
                # per image: the median over rounds of the ratio measured within each round (side by side)
                ratios = [common.median([r[i] / o[i] for r, o in zip(times[ref], times["ours"])])
                          for i in range(len(args.images))]
                print("  per image: " + ", ".join(f"{Path(p).name} ({a.shape[1]}x{a.shape[0]}) {x:.2f}x"
                                                  for p, a, x in zip(args.images, arrays, ratios)))
    if memory:
        print("memory: " + "; ".join(f"{n} loaded {m['loaded_rss_mib']:.0f} MiB, peak {m['peak_rss_mib']:.0f} MiB"
                                     for n, m in memory.items()))


if __name__ == "__main__":
    main()
