"""GPU inference and training speed, ours against torchvision's maskrcnn_resnet50_fpn, same weights and inputs,
interleaved in one run. Needs a CUDA device.

    python benchmarks/gpu.py                        # inference on 3 real images + training steps, fp32 and bf16
    python benchmarks/gpu.py --runs 20 --batch-size 8

Inference: torchvision's R50-FPN with the parity test's randomised weights, saved to a file and loaded into ours with
``maskrcnn.load(path, device="cuda")``; torchvision as ``maskrcnn_resnet50_fpn(weights="COCO_V1")`` builds it. Both
return every detection (score > 0.05, top 100) with its full-image mask, copied back to the host (what a user gets).
The parity rule of the tests is applied to the GPU outputs too.

Training: benchmarks/train_step.py's setup (fine-tuning config, same initial weights, car-parts images at 800 x 800)
on the GPU, with ``torch.autocast`` in fp32 (off) and bf16; an iteration is forward, backward and an SGD step, timed
with a synchronize on each side. Each round runs each model once, the order alternating.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import train_step  # noqa: E402


def timed(fn) -> tuple[float, object]:
    import torch

    torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start, out


def inference(runs: int) -> None:
    import torch

    import maskrcnn
    from maskrcnn.data.images import read_image
    from torchvision_oracle import Detections, match_detections

    state = common.randomised_torchvision_state_dict()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "maskrcnn_resnet50_fpn.pth"
        torch.save(state, path)
        ours = maskrcnn.load(path, device="cuda")
    reference = common.torchvision_model(state, norm="frozen").cuda()
    images = [read_image(common.DATA / p) for p in common.DEFAULT_IMAGES]

    def run_ours(image):
        return ours.predict_arrays([image], score_threshold=0.0)[0]

    def run_torchvision(image):
        with torch.inference_mode():
            out = reference([torch.from_numpy(image).permute(2, 0, 1).cuda().float() / 255.0])[0]
        return Detections.from_torchvision({k: v.cpu() for k, v in out.items()})

    runners = {"ours": run_ours, "torchvision": run_torchvision}
    matched = total = 0
    worst = 1.0
    for image in images:
        m, t, ious, _ = match_detections(run_torchvision(image), run_ours(image))
        matched, total, worst = matched + m, total + t, min([worst, *ious])
    print(f"parity on the GPU: {matched}/{total} detections matched, worst mask IoU {worst:.4f}")

    times = {name: [[] for _ in images] for name in runners}
    order = list(runners)
    for round_index in range(runs + 2):  # two warm-up rounds (cuDNN autotuning, allocator)
        for name in order:
            for i, image in enumerate(images):
                seconds, _ = timed(lambda: runners[name](image))
                if round_index >= 2:
                    times[name][i].append(seconds)
        order.reverse()
    print()
    header = " | ".join(f"{Path(p).name} ms" for p in common.DEFAULT_IMAGES)
    print(f"| model | {header} | ms/image |")
    print("|---|" + "---:|" * (len(images) + 1))
    per_image = {name: [common.median(t) * 1000 for t in ts] for name, ts in times.items()}
    for name, ms in per_image.items():
        print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in ms) + f" | {sum(ms) / len(ms):.1f} |")
    ratios = [t / o for t, o in zip(per_image["torchvision"], per_image["ours"])]
    print(f"torchvision / ours per image: {', '.join(f'{r:.2f}x' for r in ratios)}; mean ms/image "
          f"{sum(per_image['torchvision']) / sum(per_image['ours']):.2f}x (median of {runs} rounds)")


def training(runs: int, batch_size: int) -> None:
    import torch

    images, targets, num_classes = train_step.load_batch(batch_size)
    print(f"\ntraining batch: {len(images)} car-parts images at {images[0].shape[2]}x{images[0].shape[1]}")
    for dtype in (None, torch.bfloat16):
        ours, reference = train_step.build_models(num_classes)
        models = {"ours": ours.cuda(), "torchvision": reference.cuda()}
        gpu_targets = [{k: v.cuda() for k, v in t.items()} for t in targets]
        inputs = {
            "ours": [im.cuda() for im in images],
            "torchvision": [im.cuda().float() / 255.0 for im in images],
        }
        optimizers = {
            name: torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.001, momentum=0.9)
            for name, m in models.items()
        }

        def step(name):
            with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
                losses = models[name](inputs[name], gpu_targets)
            loss = sum(losses.values())
            optimizers[name].zero_grad()
            loss.backward()
            optimizers[name].step()

        times = {name: [] for name in models}
        order = list(models)
        for round_index in range(runs + 3):
            for name in order:
                seconds, _ = timed(lambda: step(name))
                if round_index >= 3:
                    times[name].append(seconds)
            order.reverse()
        label = "bf16 autocast" if dtype else "fp32"
        medians = {name: common.median(t) for name, t in times.items()}
        cells = ", ".join(f"{n} {s * 1000:.0f} ms/iteration ({len(images) / s:.1f} images/s)" for n, s in medians.items())
        print(f"{label}: {cells}; torchvision / ours {medians['torchvision'] / medians['ours']:.2f}x "
              f"(median of {runs} rounds)")
        del models, optimizers
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed rounds after the warm-up rounds (default 10)")
    parser.add_argument("--batch-size", type=int, default=8, help="training images per iteration (default 8)")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py needs a CUDA device")
    print(f"command: {common.command_line()}")
    print(f"machine: {common.machine()}, GPU {torch.cuda.get_device_name()}")
    inference(args.runs)
    training(args.runs, args.batch_size)


if __name__ == "__main__":
    main()
