"""What the side-by-side benchmarks share: the machine description, torchvision's reference model with the parity
test's weights, the real benchmark images, and peak-RSS measurement in a fresh process."""

from __future__ import annotations

import os
import platform
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MASKRCNN_SHARED_DATA", REPO.parent / "shared" / "data"))
sys.path.insert(0, str(REPO / "tests"))  # torchvision_oracle: the parity tests' reference weights and matching rule

# Real images at the default 800/1333 inference size: 512 x 512 -> 800 x 800, 640 x 480 -> 1066 x 800 (padded to
# 1088 x 800), 2048 x 1365 -> 1200 x 800 (padded to 1216 x 800).
DEFAULT_IMAGES = [
    "car-parts/train/JPEGImages/train1.jpg",
    "coco128-seg/images/train2017/000000000009.jpg",
    "balloon/val/14898532020_ba6199dd22_k.jpg",
]


def machine() -> str:
    """One line: core count, CPU model, torch version and threads, load average now."""
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"nproc {os.cpu_count()}, {cpu}, Python {platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


def load() -> str:
    """The 1-minute load average: how busy the machine was around a timed round."""
    return f"{os.getloadavg()[0]:.2f}"


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])


def randomised_torchvision_state_dict(arch: str = "v1"):
    """The parity tests' weights (tests/torchvision_oracle.py): torchvision's maskrcnn_resnet50_fpn (``arch`` "v1")
    or maskrcnn_resnet50_fpn_v2 ("v2") with fixed random weights, non-trivial BatchNorm statistics (used with eps 0
    in v1, as in its COCO file; 1e-5 in v2) and confident class logits."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2
    from torchvision_oracle import randomised_torchvision_model

    if arch == "v2":
        return randomised_torchvision_model(maskrcnn_resnet50_fpn_v2, bn_eps=1e-5).state_dict()
    return randomised_torchvision_model(maskrcnn_resnet50_fpn).state_dict()


def torchvision_model(state_dict, *, norm: str = "frozen", arch: str = "v1"):
    """torchvision's Mask R-CNN R50-FPN holding ``state_dict``, in eval mode.

    v1, norm "frozen": as ``maskrcnn_resnet50_fpn(weights="COCO_V1")`` builds it (FrozenBatchNorm2d with eps 0), the
    model users run with the published weights. norm "bn": as built with weights=None (BatchNorm2d in eval mode,
    eps set to 0), the parity test's module. v2: as ``maskrcnn_resnet50_fpn_v2(weights="COCO_V1")`` builds it (its
    backbone, FPN and heads have BatchNorm2d, eps 1e-5, whether or not weights are given; ``norm`` must be "bn").
    """
    import torch
    from torchvision.models import resnet50
    from torchvision.models.detection import maskrcnn_resnet50_fpn_v2
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.models.detection.mask_rcnn import MaskRCNN
    from torchvision.ops.misc import FrozenBatchNorm2d

    if arch == "v2":
        if norm != "bn":
            raise ValueError("torchvision's v2 model has BatchNorm2d only (norm 'bn')")
        model = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=91)
        model.load_state_dict(state_dict)
        return model.eval()
    if norm == "frozen":
        backbone = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    elif norm == "bn":
        backbone = resnet50(weights=None, norm_layer=torch.nn.BatchNorm2d)
    else:
        raise ValueError(norm)
    model = MaskRCNN(_resnet_fpn_extractor(backbone, 3), num_classes=91)
    for m in model.modules():
        if isinstance(m, (FrozenBatchNorm2d, torch.nn.BatchNorm2d)):
            m.eps = 0.0
    model.load_state_dict(state_dict)
    return model.eval()


def interleaved_times(runners: dict, inputs: list, runs: int, *, keep_outputs: bool = False) -> tuple[dict, dict]:
    """Time every runner (name -> callable(input)) on every input, one warm-up round then ``runs`` timed rounds, the
    order of the runners rotating from round to round, and print each round's totals with the load average.
    Returns (name -> one list per timed round of each input's seconds, {(name, input index): the last round's
    output} when ``keep_outputs``, else {})."""
    import time

    times = {name: [] for name in runners}
    outputs = {}
    order = list(runners)
    for round_index in range(runs + 1):
        per_input = {name: [] for name in runners}
        for i, item in enumerate(inputs):
            for name in order:
                start = time.perf_counter()
                output = runners[name](item)
                per_input[name].append(time.perf_counter() - start)
                if keep_outputs:
                    outputs[name, i] = output
        order = order[1:] + order[:1]
        if round_index == 0:
            continue  # warm-up
        for name in runners:
            times[name].append(per_input[name])
        print(f"round {round_index}: " + "  ".join(f"{n} {sum(t):.2f} s" for n, t in per_input.items())
              + f"  (load {load()})", flush=True)
    return times, outputs


def median(values: list[float]) -> float:
    return statistics.median(values)


def peak_rss_of(args: list[str]) -> dict:
    """Run ``python <this benchmark> *args`` in a fresh process that prints one JSON line; return it parsed."""
    import json

    out = subprocess.run(
        [sys.executable, sys.argv[0], *args], check=True, capture_output=True, text=True, cwd=REPO
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_mib() -> tuple[float, float]:
    """(current RSS, RSS high-water mark) of this process in MiB, from /proc/self/status."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]
