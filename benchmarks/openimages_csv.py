"""Peak memory and rows per second of filtering the Open Images CSVs the size of the train ones: the segmentation
CSV (2.7M rows, read from disk) and the box CSV (14.6M rows, 2.2 GB, streamed over HTTP as the download does).

    python benchmarks/openimages_csv.py                     # both; the segmentation CSV is kept in /tmp
    python benchmarks/openimages_csv.py --rows 300000 --box-rows 1000000   # a quick run
    python benchmarks/openimages_csv.py --baseline          # also: the segmentation CSV loaded whole with csv.reader
    python benchmarks/openimages_csv.py --skip-segmentation # the box CSV only

The box CSV is generated into a temporary folder outside the repository (about 2.2 GB at 14.6M rows) and deleted
at the end. It is served by a loopback HTTP server with Range support in another process, and
``box_csv.fetch_box_csv`` streams it in Range chunks keeping the rows of 1,000 chosen images, exactly as
``maskrcnn openimages download`` does; then ``box_csv.filter_box_file`` filters the same file from disk, without
the network. The generated rows have the train file's 21 columns (its XClick coordinates too: ~150 bytes a row),
1.74M images sorted by ImageID, ~8.4 boxes an image.

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
BOX_HEADER = ("ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,"
              "IsInside,XClick1X,XClick2X,XClick3X,XClick4X,XClick1Y,XClick2Y,XClick3Y,XClick4Y\n")
BOX_IMAGES_PER_ROW = 1_743_042 / 14_610_229  # the V6 train file
CHOSEN_BOX_IMAGES = 1000


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


def generate_boxes(path: Path, rows: int, *, seed: int = 0, chunk: int = 200_000) -> list[str]:
    """Write a box CSV of ``rows`` rows to ``path`` (sorted by ImageID); returns its ImageIDs."""
    rng = np.random.default_rng(seed)
    n_images = max(1, round(rows * BOX_IMAGES_PER_ROW))
    image_ids = [f"{v:016x}" for v in np.sort(rng.integers(0, 2**63, n_images, dtype=np.int64))]
    labels = [f"/m/0{i:05x}" for i in range(600)]
    per_image = np.sort(rng.integers(0, n_images, rows))
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(BOX_HEADER)
        for start in range(0, rows, chunk):
            idx = per_image[start : start + chunk]
            k = len(idx)
            label_idx = rng.integers(0, len(labels), k)
            coords = rng.random((k, 12))
            flags = rng.integers(0, 2, (k, 5))
            lines = []
            for i in range(k):
                c, g = coords[i], flags[i]
                lines.append(
                    f"{image_ids[idx[i]]},xclick,{labels[label_idx[i]]},1,{c[0]:.6f},{c[1]:.6f},{c[2]:.6f},"
                    f"{c[3]:.6f},{g[0]},{g[1]},{g[2]},{g[3]},{g[4]},{c[4]:.6f},{c[5]:.6f},{c[6]:.6f},{c[7]:.6f},"
                    f"{c[8]:.6f},{c[9]:.6f},{c[10]:.6f},{c[11]:.6f}\n"
                )
            f.write("".join(lines))
    return image_ids


def serve(root: Path, port_file: Path) -> None:
    """A loopback file server with Range support (``http.server`` plus seek), until killed."""
    import shutil
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from loopback import byte_range  # the test servers' Range parsing

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            path = root / self.path.lstrip("/")
            size = path.stat().st_size
            asked = byte_range(self.headers.get("Range", ""), size)
            start, stop = asked or (0, size)
            self.send_response(206 if asked else 200)
            self.send_header("Content-Length", str(stop - start))
            if asked:
                self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{size}")
            self.end_headers()
            with open(path, "rb") as f:
                f.seek(start)
                shutil.copyfileobj(_Limited(f, stop - start), self.wfile, 1 << 20)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_file.write_text(str(httpd.server_address[1]))
    httpd.serve_forever()


class _Limited:
    def __init__(self, f, n: int):
        self.f, self.left = f, n

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(self.left if size < 0 else min(size, self.left))
        self.left -= len(data)
        return data


def box_child(kind: str, csv_path: Path, ids_path: Path, url: str) -> dict:
    """One box CSV measurement, in this (fresh) process: streamed over HTTP, or filtered from the file."""
    import tempfile

    from maskrcnn.data.openimages.box_csv import fetch_box_csv, filter_box_file
    from maskrcnn.http import HttpClient

    chosen = set(ids_path.read_text().split())
    rss_before = _peak_rss_mib()
    with tempfile.TemporaryDirectory(prefix="openimages-bench-out-") as tmp:
        start = time.perf_counter()
        if kind == "http":
            http = HttpClient()
            stream = fetch_box_csv(http, url, Path(tmp) / "rows.csv", image_ids=chosen, name=csv_path.name)
        else:
            stream = filter_box_file(csv_path, Path(tmp) / "rows.csv", image_ids=chosen)
        seconds = time.perf_counter() - start
    return {"kind": kind, "seconds": seconds, "scanned": stream.rows_scanned, "kept_rows": stream.rows_kept,
            "peak_rss_mib": _peak_rss_mib(), "rss_at_start_mib": rss_before}  # fmt: skip


def run_boxes(rows: int, csv_path: Path | None, keep: bool) -> None:
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="openimages-bench-boxes-"))
    server = None
    try:
        path = csv_path or folder / "oidv6-train-annotations-bbox.csv"
        start = time.perf_counter()
        if csv_path is None:
            image_ids = generate_boxes(path, rows)
            print(f"generated {path} ({path.stat().st_size / 2**20:.0f} MiB, {rows:,} rows) in "
                  f"{time.perf_counter() - start:.1f} s")  # fmt: skip
        else:
            with open(path, encoding="utf-8") as f:
                next(f)
                image_ids = sorted({line[:16] for line in f})
        chosen = np.random.default_rng(1).choice(len(image_ids), min(CHOSEN_BOX_IMAGES, len(image_ids)), replace=False)
        ids_path = folder / "chosen.txt"
        ids_path.write_text("\n".join(image_ids[i] for i in chosen))
        port_file = folder / "port"
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(path.parent), str(port_file)])
        while not port_file.is_file() or not port_file.read_text():
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port_file.read_text()}/{path.name}"
        size_mib = path.stat().st_size / 2**20
        print(f"box CSV: {size_mib:.0f} MiB; {len(chosen)} images chosen")
        print(f"{'run':<44} {'seconds':>8} {'rows/s':>11} {'MiB/s':>7} {'kept':>7} {'peak RSS':>9} {'at start':>9}")
        titles = {"http": "box CSV streamed over HTTP (fetch_box_csv)", "file": "box CSV filtered from disk"}
        for kind in ("http", "file"):
            out = subprocess.run([sys.executable, __file__, "--box-child", kind, str(path), str(ids_path), url],
                                 check=True, capture_output=True, text=True).stdout  # fmt: skip
            r = json.loads(out)
            print(
                f"{titles[kind]:<44} {r['seconds']:>8.2f} {r['scanned'] / r['seconds']:>11,.0f} "
                f"{size_mib / r['seconds']:>7.0f} {r['kept_rows']:>7} {r['peak_rss_mib']:>6.0f} MiB "
                f"{r['rss_at_start_mib']:>5.0f} MiB"
            )
    finally:
        if server is not None:
            server.kill()
            server.wait()
        if keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


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
    parser.add_argument("--box-rows", type=int, default=14_600_000, help="rows of the generated box CSV")
    parser.add_argument("--box-csv", type=Path, help="a box CSV to use instead of generating one (not deleted)")
    parser.add_argument("--keep", action="store_true", help="keep the generated box CSV (its folder is printed)")
    parser.add_argument("--skip-segmentation", action="store_true", help="measure the box CSV only")
    parser.add_argument("--skip-boxes", action="store_true", help="measure the segmentation CSV only")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "CSV"), help=argparse.SUPPRESS)
    parser.add_argument("--box-child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
        return
    if args.box_child:
        kind, csv_path, ids_path, url = args.box_child
        print(json.dumps(box_child(kind, Path(csv_path), Path(ids_path), url)))
        return
    if args.serve:
        serve(Path(args.serve[0]), Path(args.serve[1]))
        return
    if not args.skip_segmentation:
        run_segmentation(args)
    if not args.skip_boxes:
        run_boxes(args.box_rows, args.box_csv, args.keep)


def run_segmentation(args: argparse.Namespace) -> None:

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
