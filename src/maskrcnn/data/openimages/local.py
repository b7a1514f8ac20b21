"""``maskrcnn convert --format openimages``: Open Images files already on disk -> a COCO instances dataset.

For people who downloaded the files themselves. INPUT is a folder; the files are found anywhere under it by name:

- the segmentation CSV ``{split}-annotations-object-segmentation.csv`` (one per split; ``--split`` picks one
  when there are several);
- optionally the class names ``class-descriptions-boxable.csv`` (or ``oidv6-class-descriptions.csv``,
  ``oidv7-class-descriptions.csv``: any ``*class-descriptions*.csv``), needed to give classes by DisplayName and
  to name the categories (without it classes are given and named by MID);
- the mask PNGs named as in the CSV's MaskPath (``<ImageID>_<label>_<BoxID>.png``), either extracted (any folder)
  or still inside the shard zips ``{split}-masks-{0-9a-f}.zip``;
- the images ``<ImageID>.jpg`` (any folder, e.g. ``validation/``);
- optionally the box CSV (``{split}-annotations-bbox.csv``, ``oidv6-train-annotations-bbox.csv``), the verified
  labels (``{split}-annotations-human-imagelabels-boxable.csv``) and the class hierarchy
  (``bbox_labels_600_hierarchy.json``): with them the dataset has every box of the classes (box-only instances,
  group-of regions) and each image's verified labels, as ``download`` writes it; without, only the masks.

Output: ``OUTPUT/annotations.json`` and ``OUTPUT/images/<ImageID>.jpg`` (copies), in the same COCO form as
``maskrcnn openimages download`` writes (see ``coco_writer``). All images of the segmentation CSV with an instance
of the chosen classes (all classes when none are given) are converted; instances whose image or mask is missing or
unreadable are skipped and listed.

    INPUT/
      validation-annotations-object-segmentation.csv
      class-descriptions-boxable.csv
      validation-masks/validation-masks-0.zip ... -f.zip     (or the PNGs extracted anywhere)
      validation/0001eeaf4aed83f9.jpg ...
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from maskrcnn.data.convert.report import ConvertReport
from maskrcnn.data.images import image_size
from maskrcnn.data.openimages.box_csv import BoxRow, filter_box_file, read_box_rows
from maskrcnn.data.openimages.catalog import OpenImagesClass, read_class_descriptions, resolve_classes
from maskrcnn.data.openimages.coco_writer import build_dataset
from maskrcnn.data.openimages.csv_filter import MaskRow, filter_segmentation_csv, scan_rows
from maskrcnn.data.openimages.hierarchy import read_hierarchy
from maskrcnn.data.openimages.image_labels import read_verified_labels
from maskrcnn.data.openimages.instances import plan_instances
from maskrcnn.data.openimages.layout import SPLITS, shard_of
from maskrcnn.data.openimages.remote_zip import CorruptMember, FileSource, ZipEntry, ZipFormatError, ZipReader
from maskrcnn.errors import ArgumentError, UserError
from maskrcnn.io import atomic_open, atomic_write_json

_CSV = re.compile(r"(train|validation|test)-annotations-object-segmentation\.csv")
_SHARD = re.compile(r"(train|validation|test)-masks-([0-9a-f])\.zip")
_BOXES = re.compile(r"(?:oidv[67]-)?(train|validation|test)-annotations-bbox\.csv")
_LABELS = re.compile(r"(?:oidv[67]-)?(train|validation|test)-annotations-human-imagelabels(?:-boxable)?\.csv")
_HIERARCHY = "bbox_labels_600_hierarchy.json"


def convert_openimages(
    input: Path, output_dir: Path, *, classes: list[str] | None, split: str | None
) -> ConvertReport:
    """Convert the Open Images files under ``input`` (layout in the module doc) into ``output_dir``.

    ``classes``: DisplayNames (any case) or MIDs to keep, category ids in this order (None: every class in the
    CSV, ordered by name). ``split``: which CSV when several are present (None: the only one).
    """
    if not input.is_dir():
        raise UserError(f"Open Images files are converted from a folder; {input} is not one")
    if split is not None and split not in SPLITS:
        raise UserError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    files = _find_annotation_files(input, skip=output_dir)
    csv_path, split = _pick_csv(files.csvs, split, input)
    names = read_class_descriptions(files.descriptions[0]) if files.descriptions else {}
    chosen = _choose_classes(classes, names=names, csv_path=csv_path, has_descriptions=bool(files.descriptions))
    mids = [c.mid for c in chosen]
    hierarchy = read_hierarchy(files.hierarchy, known=names or None) if files.hierarchy else None
    subclasses = sorted({d for m in mids for d in hierarchy.descendants.get(m, ())} - set(mids)) if hierarchy else []

    skipped: list[str] = []
    rows = filter_segmentation_csv(
        csv_path, labels=mids, max_images_per_class=None, seed=0, problems=skipped, extra_labels=subclasses
    )
    if not rows:
        raise UserError(f"no instances of {', '.join(c.name for c in chosen)} in {csv_path}")
    image_ids = {row.image_id for row in rows}
    boxes = _box_rows(files.boxes.get(split), image_ids=image_ids, labels=[*mids, *subclasses], problems=skipped)
    labels_path = files.labels.get(split)
    labels = None
    if labels_path is not None:
        labels = read_verified_labels(labels_path, classes=mids, hierarchy=hierarchy, source=labels_path.name,
                                      problems=skipped)  # fmt: skip
    masks = {row.mask_path for row in rows}
    image_files, mask_files = _find_files(input, skip=output_dir, image_ids=image_ids, masks=masks)

    sizes: dict[str, tuple[int, int]] = {}
    for image_id in sorted(image_ids):
        source = image_files.get(image_id)
        if source is None:
            skipped.append(f"image {image_id}.jpg: not found under {input}, its instances skipped")
            continue
        try:
            sizes[image_id] = image_size(source)
        except UserError as e:
            skipped.append(f"{e}, its instances skipped")
            continue
        _copy(source, output_dir / "images" / f"{image_id}.jpg")

    read_mask = _MaskSource(mask_files, files.shards.get(split, {}), [r for r in rows if r.mask_path not in mask_files])
    info = {"description": f"Open Images instance segmentation, converted from {csv_path.name}", "split": split,
            "classes": [c.name for c in chosen]}  # fmt: skip
    plan = plan_instances(rows, boxes, classes=mids, hierarchy=hierarchy)
    dataset, build_skipped = build_dataset(
        plan, classes=chosen, image_ids=image_ids, image_sizes=sizes, read_mask=read_mask, info=info, labels=labels,
        workers=2,
    )  # fmt: skip
    atomic_write_json(output_dir / "annotations.json", dataset)
    return ConvertReport(
        output=output_dir / "annotations.json",
        images=len(dataset["images"]),
        annotations=len(dataset["annotations"]),
        categories=len(dataset["categories"]),
        skipped=skipped + read_mask.problems + build_skipped,
    )


@dataclass
class _Files:
    """The annotation files found under the input folder (the first of each kind, in sorted walk order)."""

    csvs: dict[str, list[Path]] = field(default_factory=lambda: defaultdict(list))  # split -> segmentation CSVs
    descriptions: list[Path] = field(default_factory=list)
    shards: dict[str, dict[str, Path]] = field(default_factory=lambda: defaultdict(dict))  # split -> shard -> zip
    boxes: dict[str, Path] = field(default_factory=dict)  # split -> box CSV
    labels: dict[str, Path] = field(default_factory=dict)  # split -> labels CSV
    hierarchy: Path | None = None


def _find_annotation_files(root: Path, *, skip: Path) -> _Files:
    """The annotation files anywhere under ``root`` (see the module doc for their names)."""
    files = _Files()
    for path in _walk(root, skip=skip):
        name = path.name
        if m := _CSV.fullmatch(name):
            files.csvs[m.group(1)].append(path)
        elif "class-descriptions" in name and name.endswith(".csv"):
            files.descriptions.append(path)
        elif m := _SHARD.fullmatch(name):
            files.shards[m.group(1)].setdefault(m.group(2), path)
        elif m := _BOXES.fullmatch(name):
            files.boxes.setdefault(m.group(1), path)
        elif m := _LABELS.fullmatch(name):
            files.labels.setdefault(m.group(1), path)
        elif name == _HIERARCHY and files.hierarchy is None:
            files.hierarchy = path
    files.descriptions.sort(key=lambda p: (p.name != "class-descriptions-boxable.csv", str(p)))
    return files


def _box_rows(path: Path | None, *, image_ids: set[str], labels: list[str], problems: list[str]) -> list[BoxRow]:
    """The rows of ``labels`` in ``image_ids`` of the box CSV at ``path`` (none without one), read by streaming it
    through a temporary file of the images' rows."""
    if path is None:
        return []
    with tempfile.TemporaryDirectory(prefix="maskrcnn-oi-boxes-") as tmp:
        stream = filter_box_file(path, Path(tmp) / "boxes.csv", image_ids=image_ids)
        return read_box_rows(stream.path, labels=labels, source=path.name, problems=problems)


def _pick_csv(csvs: dict[str, list[Path]], split: str | None, root: Path) -> tuple[Path, str]:
    if not csvs:
        raise UserError(f"no <split>-annotations-object-segmentation.csv found under {root}")
    if split is None:
        if len(csvs) > 1:
            found = ", ".join(sorted(csvs))
            raise ArgumentError("split", f"segmentation CSVs of several splits under {root} ({found}): choose one "
                                "with {arg}")  # fmt: skip
        (split,) = csvs
    if split not in csvs:
        found = ", ".join(sorted(csvs))
        raise UserError(f"no {split}-annotations-object-segmentation.csv under {root} (found: {found})")
    if len(csvs[split]) > 1:
        raise UserError(f"several {split} segmentation CSVs under {root}: {', '.join(map(str, csvs[split]))}")
    return csvs[split][0], split


def _choose_classes(
    classes: list[str] | None, *, names: dict[str, str], csv_path: Path, has_descriptions: bool
) -> list[OpenImagesClass]:
    if classes:
        if not has_descriptions:
            unknown = [c for c in classes if not c.startswith("/")]
            if unknown:
                raise UserError(
                    f"no class-descriptions CSV found to look up {', '.join(map(repr, unknown))}: put "
                    "class-descriptions-boxable.csv in the input folder, or give the classes as MIDs (/m/01yrx)"
                )
            return [OpenImagesClass(mid=c, name=c) for c in dict.fromkeys(classes)]
        return resolve_classes(classes, names=names, segmentable=None)
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            labels = {row.label for row in scan_rows(f, labels=None, source=str(csv_path))}
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {csv_path}: {e}") from None
    found = [OpenImagesClass(mid=mid, name=names.get(mid, mid)) for mid in labels]
    return sorted(found, key=lambda c: (c.name.lower(), c.mid))


def _find_files(
    root: Path, *, skip: Path, image_ids: set[str], masks: set[str]
) -> tuple[dict[str, Path], dict[str, Path]]:
    """-> ({ImageID: first <ImageID>.jpg found}, {MaskPath: first PNG of that name found}), in sorted walk order."""
    images: dict[str, Path] = {}
    mask_files: dict[str, Path] = {}
    for path in _walk(root, skip=skip):
        name = path.name
        if name.endswith(".jpg") and name[:-4] in image_ids:
            images.setdefault(name[:-4], path)
        elif name in masks:
            mask_files.setdefault(name, path)
    return images, mask_files


def _walk(root: Path, *, skip: Path):
    """Files under ``root`` in a fixed order, leaving out the output folder ``skip``."""
    skip = skip.resolve()
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if (Path(folder) / d).resolve() != skip)
        for name in sorted(files):
            yield Path(folder) / name


def _copy(source: Path, target: Path) -> None:
    if target.is_file() and target.stat().st_size == source.stat().st_size:
        return  # copied by an earlier run
    try:
        with open(source, "rb") as src, atomic_open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except OSError as e:
        raise UserError(f"cannot copy {source} to {target}: {e}") from None


class _MaskSource:
    """``row -> PNG bytes | reason``: an extracted PNG, else the member of its shard zip."""

    def __init__(self, files: dict[str, Path], shards: dict[str, Path], zipped_rows: list[MaskRow]):
        self.files = files
        self.problems: list[str] = []
        self.readers: dict[str, ZipReader] = {}
        self.entries: dict[str, ZipEntry] = {}
        wanted: dict[str, set[str]] = defaultdict(set)
        for row in zipped_rows:
            if (shard := shard_of(row.image_id)) in shards:
                wanted[shard].add(row.mask_path)
        for shard, names in sorted(wanted.items()):
            try:
                reader = ZipReader.open(FileSource(shards[shard]))
            except (ZipFormatError, OSError) as e:
                self.problems.append(f"{shards[shard]}: unreadable zip ({e}), its {len(names)} masks skipped")
                continue
            for name, entry in reader.find(names).items():
                self.readers[name], self.entries[name] = reader, entry

    def __call__(self, row: MaskRow) -> bytes | str:
        if row.mask_path in self.files:
            try:
                return self.files[row.mask_path].read_bytes()
            except OSError as e:
                return f"unreadable ({e})"
        if row.mask_path not in self.entries:
            return "PNG not found, neither extracted nor in a shard zip"
        entry = self.entries[row.mask_path]
        start, stop, group = self.readers[row.mask_path].plan([entry])[0]
        try:
            (_, data), = self.readers[row.mask_path].read_group(start, stop, group)
        except OSError as e:
            return f"unreadable zip ({e})"
        return f"corrupt zip member ({data})" if isinstance(data, CorruptMember) else data
