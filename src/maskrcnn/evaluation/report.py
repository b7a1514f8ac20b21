"""An evaluation report in a folder: per-class AP bars, precision-recall curves, predictions beside ground truth.

Files written to the output folder (each atomically):
- per_class_ap.png: AP (IoU 0.50:0.95) per class, one bar per iou type, best classes first.
- pr_curves.png: precision against recall at IoU 0.50 and 0.75, averaged over the classes that have ground truth.
- pr_curves_per_class.png: the same at IoU 0.50 for each class, when there are at most 20 classes.
- predictions.png: for a fixed sample of images, predictions (score >= threshold) | ground truth, side by side.
- index.html: the metrics and per-class tables (COCO, and the Open Images challenge metric when scored) and the
  pictures above (the AP and precision-recall plots are COCO's, drawn when COCO is scored).

Plots use matplotlib's object API on an Agg canvas of their own: nothing global (pyplot, the default backend) is
touched. The sample of images is spread evenly over the ground-truth images sorted by id, preferring those with
instances, so two runs on the same data show the same images.
"""

from __future__ import annotations

import html
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from maskrcnn import __version__
from maskrcnn.data.images import guess_images_dir, read_image
from maskrcnn.errors import UserError
from maskrcnn.evaluation.coco_eval import METRIC_NAMES, CocoEvalResult, GroundTruth, load_ground_truth, match_images
from maskrcnn.evaluation.openimages_eval import OpenImagesResult
from maskrcnn.io import atomic_open, atomic_write_bytes
from maskrcnn.structures.masks import bitmap_to_box, segmentation_to_bitmap
from maskrcnn.visualize import draw_instances

MAX_CLASSES_PER_CLASS_PR = 20
CELL = 360  # pixels: the longest side of one picture in the predictions grid
PAIRS_PER_ROW = 2
IOU_COLOURS = {"bbox": "#1f77b4", "segm": "#ff7f0e"}
IOU_LINES = {"bbox": "-", "segm": "--"}  # dashed masks stay visible where the two curves coincide


def _figure(width: float, height: float):
    """A matplotlib Figure on its own Agg canvas (no pyplot, no global backend change)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png_bytes(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------------------------
# Plots


def plot_per_class_ap(result: CocoEvalResult) -> bytes:
    """PNG: horizontal bars of per-class AP (percent), one bar per iou type; classes without ground truth marked."""
    iou_types = list(result.per_class)
    names = result.class_names
    # Best first (top of the plot) by the first iou type; classes without ground truth last.
    ranking = result.per_class[iou_types[0]] if iou_types else {}
    order = sorted(range(len(names)), key=lambda k: -1.0 if ranking.get(names[k]) is None else -ranking[names[k]])
    fig = _figure(8.0, 1.2 + 0.32 * max(len(names), 1) * max(len(iou_types), 1) ** 0.5)
    ax = fig.add_subplot()
    height = 0.8 / max(len(iou_types), 1)
    y = np.arange(len(order))
    for j, iou_type in enumerate(iou_types):
        values = [result.per_class[iou_type][names[k]] for k in order]
        bars = ax.barh(
            y + (j - (len(iou_types) - 1) / 2) * height,
            [v or 0.0 for v in values],
            height=height,
            color=IOU_COLOURS.get(iou_type),
            label=iou_type,
        )
        for bar, v in zip(bars, values):
            text = "no ground truth" if v is None else f"{v:.1f}"
            ax.text(bar.get_width() + 0.8, bar.get_y() + bar.get_height() / 2, text, va="center", fontsize=7)
    ax.set_yticks(y, [names[k] for k in order], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 108)
    ax.set_xlabel("AP (IoU 0.50:0.95), percent")
    ax.set_title("Per-class AP")
    if iou_types:
        ax.legend(loc="lower right", fontsize=8)
    if not names:
        ax.text(0.5, 0.5, "no classes", transform=ax.transAxes, ha="center")
    return _png_bytes(fig)


def _mean_precision(precision: np.ndarray) -> np.ndarray | None:
    """ndarray[R, K] with -1 for classes without ground truth -> ndarray[R] mean over the others, or None."""
    valid = (precision > -1).all(axis=0)
    return precision[:, valid].mean(axis=1) if valid.any() else None


def plot_pr_curves(result: CocoEvalResult) -> bytes:
    """PNG: precision-recall at IoU 0.50 and 0.75, averaged over classes with ground truth, one line per iou type."""
    fig = _figure(10.0, 4.4)
    axes = fig.subplots(1, 2, sharey=True)
    recall = result.recall_thresholds
    for ax, iou in zip(axes, (0.50, 0.75)):
        t = int(np.argmin(np.abs(result.iou_thresholds - iou)))
        drawn = False
        for iou_type, precision in result.precision.items():
            mean = _mean_precision(precision[t])
            if mean is None:
                continue
            ap = result.metrics[iou_type]["AP50" if iou == 0.50 else "AP75"]
            label = f"{iou_type} (AP{int(iou * 100)} {ap:.1f})" if ap is not None else iou_type
            ax.plot(recall, mean, IOU_LINES.get(iou_type, "-"), color=IOU_COLOURS.get(iou_type), label=label, lw=1.8)
            drawn = True
        ax.set_title(f"IoU {iou:.2f}, mean over classes")
        ax.set_xlabel("recall")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(loc="lower left", fontsize=8)
        else:
            ax.text(0.5, 0.5, "no ground truth to score", transform=ax.transAxes, ha="center")
    axes[0].set_ylabel("precision")
    return _png_bytes(fig)


def plot_pr_curves_per_class(result: CocoEvalResult) -> bytes | None:
    """PNG: precision-recall at IoU 0.50 for each class with ground truth; None when there are none."""
    t = int(np.argmin(np.abs(result.iou_thresholds - 0.5)))
    classes = [
        k
        for k in range(len(result.class_names))
        if any((p[t, :, k] > -1).all() for p in result.precision.values())
    ]
    if not classes:
        return None
    columns = min(4, len(classes))
    rows = (len(classes) + columns - 1) // columns
    fig = _figure(3.0 * columns, 2.5 * rows + 0.4)
    axes = np.atleast_1d(fig.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)).reshape(-1)
    for ax, k in zip(axes, classes):
        for iou_type, precision in result.precision.items():
            if (precision[t, :, k] > -1).all():
                ax.plot(
                    result.recall_thresholds,
                    precision[t, :, k],
                    IOU_LINES.get(iou_type, "-"),
                    color=IOU_COLOURS.get(iou_type),
                    label=iou_type,
                )
        ax.set_title(result.class_names[k], fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in axes[len(classes) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle("Precision-recall per class at IoU 0.50")
    return _png_bytes(fig)


# ----------------------------------------------------------------------------------------------------------------
# Predictions beside ground truth


def sample_images(gt: GroundTruth, *, count: int) -> list[dict]:
    """``count`` ground-truth images spread evenly over them sorted by id, images with instances first."""
    annotated = {a["image_id"] for a in gt.annotations}
    ordered = sorted(gt.images, key=lambda img: img["id"])
    pool = [img for img in ordered if img["id"] in annotated]
    if len(pool) < count:
        pool = pool + [img for img in ordered if img["id"] not in annotated]
    if len(pool) <= count:
        return pool
    picks = np.unique(np.linspace(0, len(pool) - 1, count).round().astype(int))
    return [pool[i] for i in picks]


def _instances(records: list[dict], height: int, width: int, *, scale: float, names: dict) -> dict:
    """COCO annotations or results of one H x W image -> draw_instances arguments for the image resized by ``scale``.

    Masks are decoded one at a time at full size and shrunk (nearest) at once, so a large image with many
    instances never holds them all at full size.
    """
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # PIL order: (width, height)
    masks = np.zeros((len(records), size[1], size[0]), dtype=bool)
    boxes = np.zeros((len(records), 4), dtype=np.float64)
    have_masks = False
    for i, r in enumerate(records):
        bitmap = None
        if r.get("segmentation"):
            try:
                bitmap = segmentation_to_bitmap(r["segmentation"], height, width)
            except (ValueError, TypeError, KeyError):
                bitmap = None  # a mask that does not fit its image is left out of the picture
        if bitmap is not None:
            masks[i] = np.asarray(Image.fromarray(bitmap).resize(size, Image.Resampling.NEAREST))
            have_masks = True
        bbox = r.get("bbox") or (bitmap_to_box(bitmap) if bitmap is not None else None) or [0, 0, 0, 0]
        boxes[i] = np.array([bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3]]) * scale
    labels = [names.get(r["category_id"], str(r["category_id"])) for r in records]
    labels = [f"{name} (crowd)" if r.get("iscrowd") else name for name, r in zip(labels, records)]
    scores = np.array([r["score"] for r in records], dtype=np.float64) if records and "score" in records[0] else None
    return {"boxes": boxes, "masks": masks if have_masks else None, "labels": labels, "scores": scores}


def _load_picture(img: dict, *, images_dir: Path | None) -> tuple[np.ndarray, str | None]:
    """The image of a ground-truth entry (``images_dir / file_name``) at its ground-truth size, and a note when it had
    to be made up or resized.

    A missing or unreadable image becomes a grey canvas (the masks can still be compared); one whose size differs
    from the ground truth's is resized to it, so that the masks land where they belong.
    """
    height, width = img["height"], img["width"]
    picture = None
    if images_dir is not None:
        path = images_dir / img["file_name"]
        try:
            picture = read_image(path)
        except UserError:
            picture = None
    if picture is None:
        return np.full((height, width, 3), 128, dtype=np.uint8), "missing"
    if picture.shape[:2] != (height, width):
        resized = Image.fromarray(picture).resize((width, height), Image.Resampling.BILINEAR)
        return np.asarray(resized), f"{path}: size differs from the ground truth's, resized to {width}x{height}"
    return picture, None


def _pair(
    picture: np.ndarray, *, predictions: list[dict], truths: list[dict], names: dict
) -> tuple[np.ndarray, np.ndarray]:
    """(predictions overlay, ground-truth overlay) of one image, drawn at the grid's cell size.

    Drawing at the final size keeps captions readable whatever the image's size.
    """
    height, width = picture.shape[:2]
    scale = CELL / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    shown = np.asarray(Image.fromarray(picture).resize(size, Image.Resampling.BILINEAR))
    return (
        draw_instances(shown, **_instances(predictions, height, width, scale=scale, names=names)),
        draw_instances(shown, **_instances(truths, height, width, scale=scale, names=names)),
    )


def render_prediction_grid(
    gt: GroundTruth,
    results: list[dict],
    *,
    images: list[dict],
    images_dir: Path | None,
    score_threshold: float,
) -> tuple[bytes, list[str]]:
    """PNG of predictions | ground truth for each of ``images`` (two pairs per row), and notes (missing images).

    results: COCO results whose ``image_id`` are the ground truth's; those scoring below ``score_threshold`` are
    not drawn. images_dir: the folder the images' ``file_name``s are relative to (None: none found, all grey).
    """
    names = {c["id"]: c["name"] for c in gt.categories}
    gt_by_image: dict = {}
    for a in gt.annotations:
        gt_by_image.setdefault(a["image_id"], []).append(a)
    pred_by_image: dict = {}
    for r in results:
        if r["score"] >= score_threshold:
            pred_by_image.setdefault(r["image_id"], []).append(r)

    font = ImageFont.load_default(size=13)
    header, gap, pair_gap = 22, 8, 24
    pair_width = 2 * CELL + gap
    rows = (len(images) + PAIRS_PER_ROW - 1) // PAIRS_PER_ROW
    size = (PAIRS_PER_ROW * pair_width + pair_gap * (PAIRS_PER_ROW - 1), rows * (header + CELL + gap))
    canvas = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    missing, notes = [], []
    for n, img in enumerate(images):
        picture, note = _load_picture(img, images_dir=images_dir)
        if note == "missing":
            missing.append(img["file_name"])
        elif note:
            notes.append(note)
        predictions, truths = pred_by_image.get(img["id"], []), gt_by_image.get(img["id"], [])
        panels = _pair(picture, predictions=predictions, truths=truths, names=names)
        title = img["file_name"]
        captions = (f"{title}: predictions ({len(predictions)})", f"ground truth ({len(truths)})")
        x0 = (n % PAIRS_PER_ROW) * (pair_width + pair_gap)
        y0 = (n // PAIRS_PER_ROW) * (header + CELL + gap)
        for j, (panel, caption) in enumerate(zip(panels, captions)):
            x = x0 + j * (CELL + gap)
            canvas.paste(Image.fromarray(panel), (x + (CELL - panel.shape[1]) // 2, y0 + header))
            while font.getlength(caption) > CELL and len(caption) > 4:
                caption = "..." + caption[4:]  # keep the end: the counts
            draw.text((x, y0 + 3), caption, font=font, fill=(20, 20, 20))
    if missing:
        where = f"in {images_dir}" if images_dir is not None else "beside the ground truth"
        more = " ..." if len(missing) > 5 else ""
        notes.append(f"{len(missing)} images were not found {where}, drawn on grey: {', '.join(missing[:5])}{more}")
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue(), notes


# ----------------------------------------------------------------------------------------------------------------
# The page


def _number(value: float | None) -> str:
    return "&ndash;" if value is None else f"{value:.1f}"


def _html(
    result: CocoEvalResult | None,
    *,
    pictures: list[tuple[str, str, str]],
    source: str,
    notes: list[str],
    openimages: OpenImagesResult | None = None,
) -> str:
    """index.html: metrics, per-class AP, then each (heading or "", file, caption or "") picture."""
    e = html.escape
    scored = result if result is not None else openimages
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8"><title>maskrcnn evaluation</title>',
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1500px;color:#222}"
        "table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:0.25em 0.7em}"
        "td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}"
        "img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}</style></head><body>",
        "<h1>COCO evaluation</h1>" if result is not None else "<h1>Open Images evaluation</h1>",
        f"<p>{e(source)}: {scored.num_images} images, {scored.num_results} results. "
        f"Scored with {'pycocotools' if result is not None else 'the Open Images challenge metric'} "
        f"(maskrcnn {e(__version__)}); numbers are percent, &ndash; where there is nothing to score.</p>",
    ]
    if result is not None:
        iou_types = list(result.metrics)
        parts.append("<h2>Metrics</h2><table><tr><th></th>" + "".join(f"<th>{m}</th>" for m in METRIC_NAMES) + "</tr>")
        for iou_type in iou_types:
            cells = "".join(f'<td class="n">{_number(result.metrics[iou_type][m])}</td>' for m in METRIC_NAMES)
            parts.append(f"<tr><th>{e(iou_type)}</th>{cells}</tr>")
        parts.append("</table>")
        parts.append("<h2>Per-class AP</h2><table><tr><th>class</th>")
        parts.append("".join(f"<th>{e(t)}</th>" for t in iou_types) + "</tr>")
        for name in result.class_names:
            cells = "".join(f'<td class="n">{_number(result.per_class[t][name])}</td>' for t in iou_types)
            parts.append(f"<tr><td>{e(name)}</td>{cells}</tr>")
        parts.append("</table>")
    if openimages is not None:
        parts.append(
            "<h2>Open Images challenge metric</h2>"
            f"<p>Mask IoU 0.5, group-of weight {openimages.group_of_weight:g}: "
            f"mAP <b>{_number(openimages.mean_ap)}</b></p>"
            "<table><tr><th>class</th><th>AP</th><th>ground truth counted</th></tr>"
        )
        for name, ap in openimages.per_class.items():
            parts.append(
                f'<tr><td>{e(name)}</td><td class="n">{_number(ap)}</td>'
                f'<td class="n">{openimages.num_gt[name]:g}</td></tr>'
            )
        parts.append("</table>")
    for heading, file_name, caption in pictures:
        if heading:
            parts.append(f"<h2>{e(heading)}</h2>")
        if caption:
            parts.append(f"<p>{e(caption)}</p>")
        parts.append(f'<img src="{e(file_name)}" alt="{e(heading or file_name)}">')
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(
    output_dir: Path,
    *,
    gt: Path | dict | GroundTruth,
    results: list[dict],
    eval_result: CocoEvalResult | None,
    images_dir: Path | None,
    max_images: int = 12,
    score_threshold: float = 0.5,
    openimages: OpenImagesResult | None = None,
) -> Path:
    """Write the report's pictures and ``index.html`` into ``output_dir``; return the path of index.html.

    gt: the ground truth that ``eval_result`` was computed on (file, dict, or ``load_ground_truth``'s result);
    results: the same COCO results. eval_result: the COCO metrics (None: not scored, no COCO plots);
    openimages: the Open Images challenge metric, shown when given.
    images_dir: the folder the ground truth's ``file_name``s are relative to; None looks for it beside a gt file
    (``data.images.guess_images_dir``).
    max_images: images in the predictions grid (0 leaves the grid out); score_threshold: the least score drawn.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    ground_truth = load_ground_truth(gt)
    results, _ = match_images(results, ground_truth, source="results")
    notes = [*(eval_result.notes if eval_result is not None else []), *(openimages.notes if openimages else [])]

    pictures = []
    if eval_result is not None:
        _write_coco_plots(output_dir, eval_result, pictures)
    sample = sample_images(ground_truth, count=max_images) if max_images > 0 else []
    if sample:
        if images_dir is None and ground_truth.path is not None:
            images_dir = guess_images_dir(ground_truth.path, [img["file_name"] for img in ground_truth.images])
        grid, grid_notes = render_prediction_grid(
            ground_truth,
            results,
            images=sample,
            images_dir=Path(images_dir) if images_dir is not None else None,
            score_threshold=score_threshold,
        )
        atomic_write_bytes(output_dir / "predictions.png", grid)
        pictures.append(
            (
                "Predictions and ground truth",
                "predictions.png",
                f"{len(sample)} of {len(ground_truth.images)} images. Left: predictions with score at least "
                f"{score_threshold:.2f}; right: ground truth.",
            )
        )
        notes.extend(grid_notes)
    index = output_dir / "index.html"
    with atomic_open(index, "w") as f:
        f.write(_html(eval_result, pictures=pictures, source=str(ground_truth.path or "ground truth"), notes=notes,
                      openimages=openimages))  # fmt: skip
    return index


def _write_coco_plots(output_dir: Path, eval_result: CocoEvalResult, pictures: list[tuple[str, str, str]]) -> None:
    """The per-class AP bars and the precision-recall curves, written and added to ``pictures``."""
    atomic_write_bytes(output_dir / "per_class_ap.png", plot_per_class_ap(eval_result))
    pictures.append(("", "per_class_ap.png", ""))  # under the per-class table
    atomic_write_bytes(output_dir / "pr_curves.png", plot_pr_curves(eval_result))
    pictures.append(("Precision-recall", "pr_curves.png", "Area all, up to 100 detections per image."))
    if len(eval_result.class_names) <= MAX_CLASSES_PER_CLASS_PR:
        per_class = plot_pr_curves_per_class(eval_result)
        if per_class is not None:
            atomic_write_bytes(output_dir / "pr_curves_per_class.png", per_class)
            pictures.append(("Precision-recall per class", "pr_curves_per_class.png", ""))
