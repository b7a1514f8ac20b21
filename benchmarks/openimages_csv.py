"""Peak memory and rows per second of filtering an Open Images segmentation CSV the size of the train one.

    python benchmarks/openimages_csv.py                     # 2.7M rows, generated once into /tmp (about 400 MB)
    python benchmarks/openimages_csv.py --rows 300000       # a quick run
    python benchmarks/openimages_csv.py --baseline          # also: the CSV loaded whole with csv.reader

The generated CSV has the real columns and row sizes (about 150 bytes: 16-hex ImageIDs, 8-hex BoxIDs, normalised
box coordinates, a Clicks field of 2 clicks), 944k images and 350 labels with Zipf-like frequencies, so that
Cat and Traffic light are mid-frequency classes as in the real file. Each measurement runs in a fresh Python
process, so that its peak RSS (VmHWM) is its own.

Measured: ``filter_segmentation_csv`` for --classes "Cat,Traffic light" with --max-images-per-class 500 (two
streaming passes: choose, then collect) and without a cap (one pass, every row of the two classes kept); and,
with --baseline, what a loader that reads the CSV whole costs (a list of csv.reader rows; pandas would be
smaller per row but still hold the whole file).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CAT, TRAFFIC_LIGHT = "/m/01yrx", "/m/015qff"
HEADER = "MaskPath,ImageID,LabelName,BoxID,BoxXMin,BoxXMax,BoxYMin,BoxYMax,PredictedIoU,Clicks\n"


def generate(path: Path, rows: int, *, seed: int = 0, chunk: int = 200_000) -> None:
    """Write a segmentation CSV of ``rows`` rows to ``path`` (sorted by ImageID like the real file)."""
    rng = np.random.default_rng(seed)
    n_labels = 350
    labels = [f"/m/0{i:05x}" for i in range(n_labels)]
    # Zipf-like label frequencies; Cat and Traffic light take ranks 40 and 60 (a few thousand rows each).
    labels[40], labels[60] = CAT, TRAFFIC_LIGHT
    weights = 1.0 / np.arange(1, n_labels + 1)
    weights /= weights.sum()
    n_images = max(1, round(rows * 944_037 / 2_686_666))
    image_ids = np.sort(rng.integers(0, 2**63, n_images, dtype=np.int64))
    clicks_pool = [
        ";".join(f"{x:.5f} {y:.5f} {v}" for x, y, v in zip(rng.random(2), rng.random(2), rng.integers(0, 2, 2)))
        for _ in range(4096)
    ]
    tmp = path.with_suffix(".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(HEADER)
        per_image = np.sort(rng.integers(0, n_images, rows))
        for start in range(0, rows, chunk):
            idx = per_image[start : start + chunk]
            k = len(idx)
            label_idx = rng.choice(n_labels, k, p=weights)
            boxes = rng.integers(0, 2**32, k, dtype=np.int64)
            coords = rng.random((k, 4))
            click_idx = rng.integers(0, len(clicks_pool), k)
            lines = []
            for i in range(k):
                image = f"{image_ids[idx[i]]:016x}"
                label = labels[label_idx[i]]
                box = f"{boxes[i]:08x}"
                c = coords[i]
                lines.append(
                    f"{image}_{label.replace('/', '')}_{box}.png,{image},{label},{box},"
                    f"{c[0]:.6f},{c[1]:.6f},{c[2]:.6f},{c[3]:.6f},0.{click_idx[i] % 100:02d},"
                    f"{clicks_pool[click_idx[i]]}\n"
                )
            f.write("".join(lines))
    os.replace(tmp, path)


def child(kind: str, csv_path: Path) -> dict:
    """One measurement, in this (fresh) process."""
    from maskrcnn.data.openimages.csv_filter import filter_segmentation_csv

    rss_before = _peak_rss_mib()
    start = time.perf_counter()
    if kind == "baseline":
        import csv

        with open(csv_path, newline="", encoding="utf-8") as f:
            table = list(csv.reader(f))
        kept = sum(1 for row in table if row[2] in (CAT, TRAFFIC_LIGHT))
    else:
        cap = 500 if kind == "capped" else None
        rows = filter_segmentation_csv(csv_path, labels=[CAT, TRAFFIC_LIGHT], max_images_per_class=cap, seed=0)
        kept = len(rows)
    seconds = time.perf_counter() - start
    peak = _peak_rss_mib()
    return {"kind": kind, "seconds": seconds, "kept_rows": kept, "peak_rss_mib": peak, "rss_at_start_mib": rss_before}


def _peak_rss_mib() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: on Linux the latter keeps the parent's peak across exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_700_000)
    parser.add_argument("--csv", type=Path, help="CSV to use or create (default: /tmp/openimages-bench/<rows>.csv)")
    parser.add_argument("--baseline", action="store_true", help="also measure loading the CSV whole")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "CSV"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
        return

    csv_path = args.csv or Path("/tmp/openimages-bench") / f"segmentation-{args.rows}.csv"
    if not csv_path.is_file():
        start = time.perf_counter()
        generate(csv_path, args.rows)
        seconds = time.perf_counter() - start
        print(f"generated {csv_path} ({csv_path.stat().st_size / 2**20:.0f} MiB) in {seconds:.1f} s")
    with open(csv_path, "rb") as f:
        total_rows = sum(1 for _ in f) - 1
    size_mib = csv_path.stat().st_size / 2**20
    print(f"CSV: {total_rows} rows, {size_mib:.0f} MiB; cpu: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    kinds = ["capped", "all"] + (["baseline"] if args.baseline else [])
    print(f"{'run':<44} {'seconds':>8} {'rows/s':>11} {'MiB/s':>7} {'kept':>7} {'peak RSS':>9} {'at start':>9}")
    titles = {
        "capped": "filter, 500 images/class (2 passes)",
        "all": "filter, all images (1 pass)",
        "baseline": "baseline: whole CSV in memory (csv.reader)",
    }
    for kind in kinds:
        out = subprocess.run(
            [sys.executable, __file__, "--child", kind, str(csv_path)], check=True, capture_output=True, text=True
        ).stdout
        r = json.loads(out)
        passes = 2 if kind == "capped" else 1
        rate = total_rows * passes / r["seconds"]
        print(
            f"{titles[kind]:<44} {r['seconds']:>8.2f} {rate:>11,.0f} {size_mib * passes / r['seconds']:>7.0f} "
            f"{r['kept_rows']:>7} {r['peak_rss_mib']:>6.0f} MiB {r['rss_at_start_mib']:>5.0f} MiB"
        )


if __name__ == "__main__":
    main()
