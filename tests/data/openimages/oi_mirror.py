"""A small Open Images mirror in the real layout, generated for the tests.

    root/ann/v5/class-descriptions-boxable.csv        MID,DisplayName, no header
    root/ann/v5/classes-segmentation.txt              the MIDs with masks
    root/ann/v5/{split}-annotations-object-segmentation.csv
    root/ann/v5/{split}-masks/{split}-masks-{0-f}.zip  PNG masks, deflated, between stored filler members
    root/ann/v5/{split}-annotations-bbox.csv          every box (train: v6/oidv6-train-annotations-bbox.csv)
    root/ann/v5/{split}-annotations-human-imagelabels-boxable.csv
    root/ann/2018_04/bbox_labels_600_hierarchy.json
    root/img/{split}/{ImageID}.jpg

Masks are ellipses drawn at a resolution different from the image's (odd sizes, so nearest-neighbour resizing
has no ties), and each instance carries ``expected``: its mask resized to the image's size by an independent
oracle, torch's ``interpolate(mode="nearest-exact")``. The Box columns are the mask's box grown by 10%, so a
bbox taken from them would be caught.

Boxes: most masks have a box row, its coordinates those of the mask row's Box columns rounded to 4 decimals (so
not equal as floats), some have none (``MirrorInstance.box`` None); there are box-only instances (no mask), some
group-of, a decoy box a little off a mask's box (the mask must pair with its true partner), Limousine boxes (a
subclass of Car in the hierarchy, boxes only) and boxes of classes never requested. Labels: each image's classes
verified present, some others verified absent, a Cat verified present with no box drawn; and ``Mirror.negatives``,
extra images verified to contain neither Cat nor Traffic light (one of them through "no Animal"), plus one
verified without Cat only.

With ``problems=True`` some instances are made unusable on purpose (``MirrorInstance.problem``): a member that is
not a PNG, a member whose bytes are damaged (CRC mismatch), a CSV row whose member is missing, a mask that is
empty once resized; and rows and members with unsafe names (``Mirror.unsafe_names``) that must never be written.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

CLASS_NAMES = {
    "/m/01yrx": "Cat",
    "/m/015qff": "Traffic light",
    "/m/0bt9lr": "Dog",
    "/m/01g317": "Person",
    "/m/0k4j": "Car",
    "/m/07j7r": "Tree",  # boxes only: not in classes-segmentation.txt
    "/m/0cgh4": "Building",  # boxes only
    "/m/0jbk": "Animal",  # boxes only; in the hierarchy above Cat and Dog
    "/m/07yv9": "Vehicle",  # boxes only; above Car
    "/m/01lcw4": "Limousine",  # boxes only; below Car
}
CAT, LIGHT, CAR, LIMOUSINE, ANIMAL = "/m/01yrx", "/m/015qff", "/m/0k4j", "/m/01lcw4", "/m/0jbk"
HIERARCHY = {
    "LabelName": "/m/0bl9f",
    "Subcategory": [
        {"LabelName": "/m/0jbk", "Subcategory": [{"LabelName": "/m/01yrx"}, {"LabelName": "/m/0bt9lr"}]},
        {"LabelName": "/m/07yv9", "Subcategory": [{"LabelName": "/m/0k4j", "Subcategory": [{"LabelName": "/m/01lcw4"}]}]},
        {"LabelName": "/m/01g317"},
        {"LabelName": "/m/015qff"},
        {"LabelName": "/m/07j7r"},
        {"LabelName": "/m/0cgh4"},
    ],
}  # fmt: skip
BOX_COLUMNS = "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside"
LABEL_COLUMNS = "ImageID,Source,LabelName,Confidence"
SEGMENTABLE = ["/m/01yrx", "/m/015qff", "/m/0bt9lr", "/m/01g317", "/m/0k4j"]
LABEL_WEIGHTS = [0.3, 0.25, 0.2, 0.15, 0.1]
UNSAFE_NAMES = ["../../evil.png", "/tmp/oi-evil-absolute.png", "..\\..\\evil-backslash.png", "sub/../../evil-sub.png"]
COLUMNS = "MaskPath,ImageID,LabelName,BoxID,BoxXMin,BoxXMax,BoxYMin,BoxYMax,PredictedIoU,Clicks"


@dataclass
class MirrorInstance:
    image_id: str
    label: str
    box_id: str | None  # None: a box-only instance (no mask row)
    mask_path: str | None
    expected: np.ndarray | None  # bool[H, W] at the image's size; None for a problem or box-only instance
    problem: str | None = None  # "corrupt-png" | "corrupt-member" | "missing-member" | "empty" | None
    box: tuple[float, float, float, float] | None = None  # its box CSV row (XMin, XMax, YMin, YMax); None: no row
    group_of: bool = False


@dataclass
class Mirror:
    root: Path
    split: str
    image_sizes: dict[str, tuple[int, int]]  # ImageID -> (W, H)
    instances: list[MirrorInstance]
    shard_bytes: dict[str, int] = field(default_factory=dict)  # shard -> zip size
    labels: list[tuple[str, str, int]] = field(default_factory=list)  # (ImageID, MID, Confidence)
    negatives: dict[str, set[str]] = field(default_factory=dict)  # extra ImageID -> MIDs verified absent there

    @property
    def ann(self) -> Path:
        return self.root / "ann"

    @property
    def img(self) -> Path:
        return self.root / "img"

    def shard_path(self, shard: str) -> Path:
        return self.ann / "v5" / f"{self.split}-masks" / f"{self.split}-masks-{shard}.zip"

    def csv_path(self) -> Path:
        return self.ann / "v5" / f"{self.split}-annotations-object-segmentation.csv"

    def box_csv_path(self) -> Path:
        return self.ann / "v5" / f"{self.split}-annotations-bbox.csv"

    def labels_csv_path(self) -> Path:
        return self.ann / "v5" / f"{self.split}-annotations-human-imagelabels-boxable.csv"

    def hierarchy_path(self) -> Path:
        return self.ann / "2018_04" / "bbox_labels_600_hierarchy.json"

    def instances_of(self, mids: set[str]) -> list[MirrorInstance]:
        return [i for i in self.instances if i.label in mids]


def oracle_resize(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize by torch, the test oracle (exact here: mask sizes are odd, so no ties)."""
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    return torch.nn.functional.interpolate(t, size=(height, width), mode="nearest-exact")[0, 0].numpy() > 0.5


def _odd(n: float) -> int:
    n = max(5, int(round(n)))
    return n if n % 2 else n + 1


def _png(mask: np.ndarray, mode: str) -> bytes:
    buf = io.BytesIO()
    image = Image.fromarray(mask.astype(np.uint8) * 255)
    (image.convert("1") if mode == "1" else image).save(buf, format="PNG")
    return buf.getvalue()


def _ellipse(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    ry, rx = rng.uniform(0.15, 0.35) * h, rng.uniform(0.15, 0.35) * w
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def make_mirror(
    root: Path,
    *,
    split: str = "validation",
    n_images: int = 36,
    seed: int = 0,
    problems: bool = False,
    fillers_per_shard: int = 60,
    filler_bytes: int = 4000,
) -> Mirror:
    rng = np.random.default_rng(seed)
    mirror = Mirror(root=root, split=split, image_sizes={}, instances=[])
    members: dict[str, dict[str, bytes]] = {s: {} for s in "0123456789abcdef"}
    rows: list[str] = []
    seg_boxes: dict[str, tuple[float, float, float, float]] = {}  # MaskPath -> the Box columns of its row
    image_dir = mirror.img / split
    image_dir.mkdir(parents=True, exist_ok=True)

    for n in range(n_images):
        # Every shard gets images: the first hex digit cycles, the rest is random.
        image_id = "0123456789abcdef"[n % 16] + "".join(rng.choice(list("0123456789abcdef"), 15))
        width, height = int(rng.integers(48, 121)), int(rng.integers(40, 101))
        mirror.image_sizes[image_id] = (width, height)
        pixels = (rng.random((height // 8 + 1, width // 8 + 1, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR).save(
            image_dir / f"{image_id}.jpg", quality=90
        )
        for _ in range(int(rng.integers(1, 4))):
            label = str(rng.choice(SEGMENTABLE, p=LABEL_WEIGHTS))
            box_id = "".join(rng.choice(list("0123456789abcdef"), 8))
            scale = float(rng.choice([0.6, 1.3, 1.7, 2.2]))
            mh, mw = _odd(height * scale), _odd(width * scale)
            while True:
                mask = _ellipse(rng, mh, mw)
                expected = oracle_resize(mask, height, width)
                if expected.any():
                    break
            mask_path = f"{image_id}_{label.replace('/', '')}_{box_id}.png"
            members[image_id[0]][mask_path] = _png(mask, "1" if rng.random() < 0.3 else "L")
            mirror.instances.append(MirrorInstance(image_id, label, box_id, mask_path, expected))
            rows.append(_row(mask_path, image_id, label, box_id, expected, rng))
            seg_boxes[mask_path] = _seg_box(expected)

    damaged: list[tuple[str, str]] = []
    if problems:
        ids = list(mirror.image_sizes)
        cat = "/m/01yrx"
        for k, problem in enumerate(["corrupt-png", "corrupt-member", "missing-member", "empty"]):
            image_id = ids[k]
            width, height = mirror.image_sizes[image_id]
            box_id = f"bad{k:05d}"
            mask_path = f"{image_id}_m01yrx_{box_id}.png"
            if problem == "corrupt-png":
                members[image_id[0]][mask_path] = b"this is not a PNG file" * 10
            elif problem == "corrupt-member":
                members[image_id[0]][mask_path] = _png(_ellipse(rng, 31, 41), "L")
                damaged.append((image_id[0], mask_path))
            elif problem == "empty":
                # One pixel that nearest-neighbour downsampling by ~3x never samples.
                mh, mw = _odd(height * 3), _odd(width * 3)
                mask = np.zeros((mh, mw), bool)
                sampled_rows = {int(r) for r in ((2 * np.arange(height) + 1) * mh) // (2 * height)}
                sampled_cols = {int(c) for c in ((2 * np.arange(width) + 1) * mw) // (2 * width)}
                r = next(r for r in range(mh) if r not in sampled_rows)
                c = next(c for c in range(mw) if c not in sampled_cols)
                mask[r, c] = True
                assert not oracle_resize(mask, height, width).any()
                members[image_id[0]][mask_path] = _png(mask, "L")
            mirror.instances.append(MirrorInstance(image_id, cat, box_id, mask_path, None, problem))
            rows.append(_row(mask_path, image_id, cat, box_id, np.ones((height, width), bool), rng))
            seg_boxes[mask_path] = _seg_box(np.ones((height, width), bool))
        # Unsafe names, in the CSV and in the zips: none may ever become a file.
        victim = ids[4]
        for j, name in enumerate(UNSAFE_NAMES):
            members[victim[0]][name] = _png(_ellipse(rng, 21, 21), "L")
            rows.append(_row(name, victim, cat, f"evil{j}", np.ones((4, 4), bool), rng))
        rows.append(_row(f"{victim}_m01yrx_evilid.png", "../../evil-id", cat, "evilid", np.ones((4, 4), bool), rng))

    fillers: set[str] = set()
    for shard, shard_members in members.items():
        for k in range(fillers_per_shard):
            name = f"{shard}{int(rng.integers(1 << 60)):015x}_m01g317_{k:08x}.png"
            shard_members[name] = rng.bytes(filler_bytes)  # incompressible, stored: bulk the wanted masks sit in
            fillers.add(name)
        path = mirror.shard_path(shard)
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w") as zf:
            for name in sorted(shard_members):
                method = zipfile.ZIP_STORED if name in fillers else zipfile.ZIP_DEFLATED
                zf.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), shard_members[name], compress_type=method)
        for shard_of_damage, name in damaged:
            if shard_of_damage == shard:
                _damage_member(path, name)
        mirror.shard_bytes[shard] = path.stat().st_size

    v5 = mirror.ann / "v5"
    (v5 / "class-descriptions-boxable.csv").write_text(
        "".join(f"{mid},{name}\n" for mid, name in CLASS_NAMES.items()), encoding="utf-8"
    )
    (v5 / "classes-segmentation.txt").write_text("".join(f"{mid}\n" for mid in SEGMENTABLE), encoding="utf-8")
    order = rng.permutation(len(rows))  # the real CSV is not sorted by class
    mirror.csv_path().write_text(COLUMNS + "\n" + "".join(rows[i] for i in order), encoding="utf-8")
    _add_boxes_and_labels(mirror, seg_boxes, np.random.default_rng(seed + 1000), problems=problems)
    return mirror


def _add_boxes_and_labels(mirror: Mirror, seg_boxes: dict, rng: np.random.Generator, *, problems: bool) -> None:
    """The box CSV, the labels CSV, the hierarchy, and the negative images (see the module doc)."""
    positives = list(mirror.image_sizes)
    for inst in mirror.instances:
        if inst.problem in ("corrupt-member", "missing-member") or (inst.problem is None and rng.random() < 0.15):
            continue  # a mask without a box row
        inst.box = tuple(round(v, 4) for v in seg_boxes[inst.mask_path])  # the same box, other float digits
    decoy = next(i for i in mirror.instances if i.label == CAT and i.box is not None and i.problem is None)
    extra = [MirrorInstance(decoy.image_id, CAT, None, None, None, box=tuple(v + 0.003 for v in decoy.box))]
    for k, image_id in enumerate(positives):
        for _ in range(int(rng.integers(0, 3))):
            extra.append(MirrorInstance(image_id, str(rng.choice(SEGMENTABLE, p=LABEL_WEIGHTS)), None, None, None,
                                        box=_random_box(rng), group_of=bool(rng.random() < 0.3)))  # fmt: skip
        if k % 5 == 1:
            extra.append(MirrorInstance(image_id, LIMOUSINE, None, None, None, box=_random_box(rng)))
        if k % 3 == 0:
            extra.append(MirrorInstance(image_id, "/m/07j7r", None, None, None, box=_random_box(rng)))  # a Tree
    mirror.instances += extra

    # Negative images: verified without Cat and Traffic light (the 5th through "no Animal"); the 6th without Cat only.
    absent_sets = [{CAT, LIGHT}] * 4 + [{ANIMAL, LIGHT}, {CAT}]
    for k, absent in enumerate(absent_sets):
        image_id = "0123456789abcdef"[(k * 7) % 16] + "".join(rng.choice(list("0123456789abcdef"), 15))
        width, height = int(rng.integers(48, 121)), int(rng.integers(40, 101))
        mirror.image_sizes[image_id] = (width, height)
        pixels = (rng.random((height // 8 + 1, width // 8 + 1, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).resize((width, height)).save(mirror.img / mirror.split / f"{image_id}.jpg")
        mirror.negatives[image_id] = set(absent)
        mirror.labels += [(image_id, mid, 0) for mid in sorted(absent)]
        if k == 0:
            mirror.instances.append(MirrorInstance(image_id, "/m/07j7r", None, None, None, box=_random_box(rng)))

    # Labels of the positive images: what is there, some of what is not, and one Cat present without a box.
    without_cat = next(i for i in positives if CAT not in {x.label for x in mirror.instances if x.image_id == i})
    for image_id in positives:
        here = {x.label for x in mirror.instances if x.image_id == image_id}
        mirror.labels += [(image_id, mid, 1) for mid in sorted(here)]
        mirror.labels += [(image_id, mid, 0) for mid in SEGMENTABLE if mid not in here and rng.random() < 0.3]
        if image_id == without_cat:
            mirror.labels = [row for row in mirror.labels if row[:2] != (image_id, CAT)] + [(image_id, CAT, 1)]

    boxes = sorted(
        (inst.image_id, inst.label, inst.box, inst.group_of) for inst in mirror.instances if inst.box is not None
    )
    if problems:
        boxes.append(("../../evil-id", CAT, (0.1, 0.2, 0.1, 0.2), False))
    lines = [f"{i},xclick,{label},1,{b[0]},{b[1]},{b[2]},{b[3]},0,0,{int(g)},0,0\n" for i, label, b, g in boxes]
    mirror.box_csv_path().write_text(BOX_COLUMNS + "\n" + "".join(lines), encoding="utf-8")
    order = rng.permutation(len(mirror.labels))
    label_lines = [f"{i},verification,{mid},{c}\n" for i, mid, c in (mirror.labels[j] for j in order)]
    mirror.labels_csv_path().write_text(LABEL_COLUMNS + "\n" + "".join(label_lines), encoding="utf-8")
    mirror.hierarchy_path().parent.mkdir(parents=True, exist_ok=True)
    mirror.hierarchy_path().write_text(json.dumps(HIERARCHY), encoding="utf-8")


def _random_box(rng: np.random.Generator) -> tuple[float, float, float, float]:
    x0, y0 = (round(float(v), 4) for v in rng.uniform(0.0, 0.6, 2))
    x1, y1 = (round(float(v), 4) for v in (x0 + rng.uniform(0.1, 0.4), y0 + rng.uniform(0.1, 0.4)))
    return (x0, x1, y0, y1)


def _seg_box(expected: np.ndarray) -> tuple[float, float, float, float]:
    """The Box columns of a mask row: the mask's box grown by 10% (so a bbox taken from them would be caught)."""
    h, w = expected.shape
    ys, xs = np.nonzero(expected)
    x0, x1 = xs.min() / w, (xs.max() + 1) / w
    y0, y1 = ys.min() / h, (ys.max() + 1) / h
    grow_x, grow_y = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
    box = (max(0, x0 - grow_x), min(1, x1 + grow_x), max(0, y0 - grow_y), min(1, y1 + grow_y))
    return tuple(float(f"{v:.6f}") for v in box)


def _row(mask_path: str, image_id: str, label: str, box_id: str, expected: np.ndarray, rng) -> str:
    box = _seg_box(expected)
    clicks = ";".join(f"{rng.random():.5f} {rng.random():.5f} {int(rng.integers(0, 2))}" for _ in range(3))
    return f"{mask_path},{image_id},{label},{box_id},{box[0]:.6f},{box[1]:.6f},{box[2]:.6f},{box[3]:.6f},0.9,{clicks}\n"


def _damage_member(path: Path, name: str) -> None:
    """Flip bytes in the middle of a member's stored data (the zip's CRC no longer matches)."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name_len + extra_len
    middle = start + info.compress_size // 2
    for i in range(middle, middle + 4):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def make_local_copy(mirror: Mirror, dest: Path, *, extracted_shards: str, boxes: bool = True) -> Path:
    """The mirror as someone who downloaded it has it: CSVs at the top (the box and labels CSVs and the hierarchy
    too, unless ``boxes`` is False), the shards in ``extracted_shards`` unzipped into ``masks/`` (plain names only),
    the other shards as zips, the images in ``{split}/``."""
    v5 = mirror.ann / "v5"
    dest.mkdir(parents=True)
    for name in ("class-descriptions-boxable.csv", mirror.csv_path().name):
        shutil.copy(v5 / name, dest / name)
    if boxes:
        for path in (mirror.box_csv_path(), mirror.labels_csv_path(), mirror.hierarchy_path()):
            shutil.copy(path, dest / path.name)
    (dest / "masks").mkdir()
    for shard in "0123456789abcdef":
        if shard in extracted_shards:
            with zipfile.ZipFile(mirror.shard_path(shard)) as zf:
                for info in zf.infolist():
                    if "/" not in info.filename and "\\" not in info.filename and ".." not in info.filename:
                        try:
                            data = zf.read(info)
                        except (zipfile.BadZipFile, zlib.error):
                            continue  # the damaged member: as if extraction had failed for it
                        (dest / "masks" / info.filename).write_bytes(data)
        else:
            shutil.copy(mirror.shard_path(shard), dest / "masks" / mirror.shard_path(shard).name)
    shutil.copytree(mirror.img / mirror.split, dest / mirror.split)
    return dest


def box_bbox(box: tuple[float, float, float, float], width: int, height: int) -> list[float]:
    """The COCO bbox [x, y, w, h] of a normalised (XMin, XMax, YMin, YMax) box, worked out as documented: pixels
    clipped to the image, rounded to 2 decimals."""
    x0, x1 = (round(min(max(v * width, 0.0), width), 2) for v in box[:2])
    y0, y1 = (round(min(max(v * height, 0.0), height), 2) for v in box[2:])
    return [x0, y0, round(x1 - x0, 2), round(y1 - y0, 2)]


def expected_instances(mirror: Mirror, categories: dict[str, str], chosen: set[str]) -> dict[tuple, MirrorInstance]:
    """key -> instance for what the dataset must hold: every usable mask, every box without a mask, of the labels in
    ``categories`` (LabelName -> the requested MID it is written as) in the ``chosen`` images. Keys as
    ``annotation_key`` makes them."""
    expected = {}
    for inst in mirror.instances:
        if inst.image_id not in chosen or inst.label not in categories:
            continue
        if inst.mask_path is not None and inst.problem is None:
            expected["mask", inst.image_id, inst.box_id] = inst
        elif inst.box is not None and (inst.mask_path is None or inst.problem in ("corrupt-png", "empty")):
            bbox = box_bbox(inst.box, *mirror.image_sizes[inst.image_id])
            expected["box", inst.image_id, categories[inst.label], tuple(bbox)] = inst
    return expected


def annotation_key(dataset: dict, ann: dict) -> tuple:
    images = {img["id"]: img["open_images_id"] for img in dataset["images"]}
    mids = {c["id"]: c["mid"] for c in dataset["categories"]}
    if ann.get("isbbox"):
        return "box", images[ann["image_id"]], mids[ann["category_id"]], tuple(ann["bbox"])
    return "mask", images[ann["image_id"]], ann["open_images_box_id"]
