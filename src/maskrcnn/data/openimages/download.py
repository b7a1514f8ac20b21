"""``maskrcnn openimages download``: N images of a few Open Images classes, with every box and mask of those classes
in them and their verified labels, as a COCO dataset.

The run, each step reusing what an earlier run left in ``output_dir`` (see ``layout`` for the files):

1. annotation files: class names, segmentation classes, class hierarchy, the split's segmentation CSV and verified
   image-level labels (cached whole);
2. class names -> MIDs (``catalog``); the segmentation CSV streamed and filtered, images chosen by seed
   (``csv_filter``); with ``negatives``, images verified to contain none of the classes (``image_labels``);
3. the box CSV streamed from the server, only the chosen images' rows kept (``box_csv``);
4. images downloaded in parallel (``image_fetch``);
5. the masks of the downloaded images read out of the remote shard zips by Range requests (``mask_fetch``);
6. masks joined to their boxes (``instances``), ``annotations.json`` written (``coco_writer``), and a
   ``DownloadReport``.

Every file is written atomically, so a run killed at any point leaves only complete files (and the box CSV's
progress), and running the same command again ends with the same dataset, fetching only what is missing (nothing,
when all is there). A file that fails after the retries is reported and its image left out: the report says the
dataset is partial. An image whose masks could not all be fetched is left out too, rather than written with
objects missing.

>>> report = download_openimages(classes=["Cat", "Traffic light"], split="validation",
...                              output_dir=Path("oi-cats"), max_images_per_class=50, negatives=20)
>>> print(report.summary())
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

from maskrcnn.data.openimages.box_csv import fetch_box_csv, read_box_rows, selection_key
from maskrcnn.data.openimages.catalog import (
    OpenImagesClass,
    read_class_descriptions,
    read_segmentation_classes,
    resolve_classes,
)
from maskrcnn.data.openimages.coco_writer import build_dataset, dataset_counts
from maskrcnn.data.openimages.csv_filter import filter_segmentation_csv
from maskrcnn.data.openimages.hierarchy import ClassHierarchy, read_hierarchy
from maskrcnn.data.openimages.image_fetch import fetch_images
from maskrcnn.data.openimages.image_labels import choose_negatives, read_verified_labels
from maskrcnn.data.openimages.instances import plan_instances
from maskrcnn.data.openimages.layout import (
    CLASS_DESCRIPTIONS,
    DEFAULT_ANNOTATIONS_URL,
    DEFAULT_IMAGES_URL,
    HIERARCHY,
    SEGMENTATION_CLASSES,
    SPLITS,
    base_url,
    box_cache_dir,
    box_csv,
    cache_root,
    labels_csv,
    segmentation_csv,
)
from maskrcnn.data.openimages.mask_fetch import fetch_masks, read_cached_mask
from maskrcnn.data.openimages.report import DownloadReport
from maskrcnn.errors import ArgumentError, UserError, check_at_least
from maskrcnn.http import FetchError, HttpClient, RetryPolicy
from maskrcnn.io import atomic_write_bytes, atomic_write_json

INFO = {
    "description": "Open Images V5 instance segmentation subset (annotations CC BY 4.0; Open Images lists the "
    "images as CC BY 2.0)",
    "url": "https://storage.googleapis.com/openimages/web/index.html",
    "version": "v5",
}


def download_openimages(
    *,
    classes: list[str],
    split: str,
    output_dir: Path,
    max_images_per_class: int | None = None,
    seed: int = 0,
    negatives: int = 0,
    workers: int = 16,
    annotations_url: str = DEFAULT_ANNOTATIONS_URL,
    images_url: str = DEFAULT_IMAGES_URL,
    retry: RetryPolicy = RetryPolicy(),
    progress: bool = False,
) -> DownloadReport:
    """Fetch what is missing and write ``output_dir/annotations.json`` + ``output_dir/images/``.

    ``classes``: DisplayNames (any case) or MIDs; category ids follow their order. ``max_images_per_class``: cap
    on the images chosen for each class (None: all). ``negatives``: also this many images verified to contain none
    of the classes. Raises ``UserError`` for bad arguments, unknown classes and annotation files that cannot be
    fetched or read; failures of single images or masks are in the report instead.
    """
    _check_arguments(split=split, workers=workers, max_images_per_class=max_images_per_class, negatives=negatives)
    with _disk_errors_as_user_errors(output_dir):
        output_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_temp_files(output_dir)
        http = HttpClient(policy=retry)

        def annotation_file(relative: str) -> Path:
            return _annotation_file(http, annotations_url, relative, output_dir, progress)

        chosen_classes, hierarchy = _classes_and_hierarchy(annotation_file, classes)
        mids = [c.mid for c in chosen_classes]
        subclasses = sorted({d for m in mids for d in hierarchy.descendants.get(m, ())} - set(mids))
        skipped: list[str] = []
        csv_path = annotation_file(segmentation_csv(split))
        rows = filter_segmentation_csv(
            csv_path,
            labels=mids,
            max_images_per_class=max_images_per_class,
            seed=seed,
            problems=skipped,
            extra_labels=subclasses,
        )
        if not rows:
            listed = ", ".join(c.name for c in chosen_classes)
            raise UserError(f"no instance masks of {listed} in the {split} split ({csv_path.name})")
        labels = read_verified_labels(annotation_file(labels_csv(split)), classes=mids, hierarchy=hierarchy,
                                      source=labels_csv(split), problems=skipped)  # fmt: skip
        positives = {row.image_id for row in rows}
        negative_ids = choose_negatives(labels, classes=mids, count=negatives, seed=seed, exclude=positives)
        chosen_ids = sorted(positives | set(negative_ids))
        box_stream = fetch_box_csv(
            http,
            base_url(annotations_url) + box_csv(split),
            box_cache_dir(output_dir) / f"{split}-{selection_key(chosen_ids)}.csv",
            image_ids=set(chosen_ids),
            name=box_csv(split),
            progress=progress,
        )
        boxes = read_box_rows(box_stream.path, labels=[*mids, *subclasses], source=box_csv(split), problems=skipped)

        common = {"http": http, "split": split, "output_dir": output_dir, "workers": workers, "progress": progress}
        images = fetch_images(chosen_ids, images_url=images_url, **common)
        present = [row for row in rows if row.image_id in images.sizes]
        masks = fetch_masks(present, annotations_url=annotations_url, **common)
        failed = [f"image {image_id}: {reason}" for image_id, reason in sorted(images.failed.items())]
        failed += [f"mask {row.mask_path}: {masks.failed[row.mask_path]} (image {row.image_id} left out)"
                   for row in present if row.mask_path in masks.failed]  # fmt: skip
        incomplete = {row.image_id for row in present if row.mask_path in masks.failed}

        info = dict(INFO, split=split, classes=[c.name for c in chosen_classes], seed=seed,
                    max_images_per_class=max_images_per_class, negatives=negatives)  # fmt: skip
        plan = plan_instances(rows, boxes, classes=mids, hierarchy=hierarchy)
        dataset, build_skipped = build_dataset(
            plan,
            classes=chosen_classes,
            image_ids=chosen_ids,
            image_sizes={i: size for i, size in images.sizes.items() if i not in incomplete},
            read_mask=partial(read_cached_mask, output_dir, split),
            info=info,
            labels=labels,
            negatives=negative_ids,
            workers=min(workers, 4),
        )
        skipped += build_skipped
        atomic_write_json(output_dir / "annotations.json", dataset)
        log = cache_root(output_dir) / "last-run.log"
        lines = [f"skipped: {m}\n" for m in skipped] + [f"failed: {m}\n" for m in failed]
        atomic_write_bytes(log, "".join(lines).encode("utf-8"))
        return DownloadReport(
            output=output_dir / "annotations.json",
            split=split,
            images=len(dataset["images"]),
            annotations=len(dataset["annotations"]),
            instances_per_class=_instances_per_class(dataset, chosen_classes),
            counts=dataset_counts(dataset, negative_ids),
            unmatched_boxes=plan.unmatched_boxes,
            unmatched_masks=plan.unmatched_masks,
            box_rows_scanned=box_stream.rows_scanned,
            box_rows_kept=box_stream.rows_kept,
            whole_box_csv=box_stream.whole_file,
            chosen_images=len(images.sizes) + len(images.failed),
            images_fetched=images.fetched,
            images_reused=images.reused,
            masks_fetched=masks.fetched,
            masks_reused=masks.reused,
            whole_shards=masks.whole_shards,
            bytes_fetched=http.bytes_received,
            requests=http.requests,
            skipped=skipped,
            failed=failed,
            log=log,
        )


def _check_arguments(*, split: str, workers: int, max_images_per_class: int | None, negatives: int) -> None:
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    check_at_least("workers", workers, 1)
    if max_images_per_class is not None:
        check_at_least("max_images_per_class", max_images_per_class, 1)
    check_at_least("negatives", negatives, 0)


def _classes_and_hierarchy(
    annotation_file: Callable[[str], Path], classes: list[str]
) -> tuple[list[OpenImagesClass], ClassHierarchy]:
    """The requested classes resolved against the (cached) class lists, and the class hierarchy."""
    names = read_class_descriptions(annotation_file(CLASS_DESCRIPTIONS))
    segmentable = read_segmentation_classes(annotation_file(SEGMENTATION_CLASSES))
    chosen = resolve_classes(classes, names=names, segmentable=segmentable)
    return chosen, read_hierarchy(annotation_file(HIERARCHY), known=names)


def _instances_per_class(dataset: dict, classes: list[OpenImagesClass]) -> dict[str, int]:
    counts = {c.name: 0 for c in classes}
    for ann in dataset["annotations"]:
        counts[classes[ann["category_id"] - 1].name] += 1
    return counts


@contextlib.contextmanager
def _disk_errors_as_user_errors(output_dir: Path) -> Iterator[None]:
    """Disk errors (full, read-only, permissions) become one message; network errors arrive as FetchError."""
    try:
        yield
    except OSError as e:
        raise UserError(f"cannot write under {output_dir}: {e}") from None


def _annotation_file(http: HttpClient, annotations_url: str, relative: str, output_dir: Path, progress: bool) -> Path:
    """``relative`` (e.g. ``v5/classes-segmentation.txt``) cached under ``output_dir/.openimages``; fetched if
    absent."""
    path = cache_root(output_dir) / relative
    if path.is_file():
        return path
    try:
        http.download(base_url(annotations_url) + relative, path, progress=progress, desc=path.name)
    except FetchError as e:
        raise ArgumentError(
            "annotations_url",
            f"cannot download {e.url}: {e.reason}. Check the network, or set {{arg}} to a mirror that has {relative}",
        ) from None
    return path


def _remove_stale_temp_files(output_dir: Path) -> None:
    """Delete the temporary files an interrupted run left (``.<name>.<random>.tmp`` from ``maskrcnn.io``)."""
    stale = [*output_dir.glob(".annotations.json.*.tmp"), *(output_dir / "images").glob(".*.jpg.*.tmp")]
    stale += box_cache_dir(output_dir).glob("*.whole")  # a box CSV downloaded whole, its filtering cut short
    if cache_root(output_dir).is_dir():
        stale += cache_root(output_dir).rglob(".*.tmp")
    for path in stale:
        path.unlink(missing_ok=True)
