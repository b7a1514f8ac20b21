"""The published weights that ``--weights NAME`` knows: where each file is, what it holds, and how it is checked.

Every number here is copied from its publisher, with the place it comes from:

- torchvision: URLs, COCO val2017 box/mask AP and file sizes (MB) from the weights metadata of
  ``torchvision.models.detection.mask_rcnn`` and ``torchvision.models.resnet`` (torchvision 0.29). torchvision's
  file names end in ``-<hex>.pth`` where the hex is the first eight or more digits of the file's SHA-256 (the
  convention ``torch.hub.load_state_dict_from_url(check_hash=True)`` checks); that prefix is all torchvision
  publishes, so it is what we check.
- detectron2: URLs and COCO val2017 box/mask AP from MODEL_ZOO.md of facebookresearch/detectron2 (commit 02b5c4e,
  "COCO Instance Segmentation Baselines with Mask R-CNN"). That page says "any model on this page contains its md5
  prefix in its file name" (``model_final_f10217.pkl``: the MD5 starts with f10217), so that MD5 prefix is what we
  check. detectron2 publishes no SHA-256 and no file sizes, and no full digest is recorded here that its publisher
  did not state; the SHA-256 computed at the first check is kept beside the file so that later uses detect a
  changed file.
  The zoo has Mask R-CNN R50-FPN at 1x and 3x, but R101-FPN and X101-32x8d-FPN at 3x only.
"""

from __future__ import annotations

from dataclasses import dataclass

# Why an entry cannot be used yet; each goes once the architecture or convention it names is supported.
_TORCHVISION_V2 = (
    "torchvision's v2 architecture (two-conv RPN head, four-conv + BN box head, BN mask head) is not yet supported"
)


@dataclass(frozen=True)
class WeightsEntry:
    """One published weights file.

    kind: "detector" (a whole Mask R-CNN, for predict/evaluate/export/train) or "backbone" (an ImageNet ResNet,
    to start training from). box_ap / mask_ap: COCO val2017 AP as published (None for backbones). size_mb: the
    published file size in MB (None where the publisher gives none). Checks, all that are set must pass:
    sha256 (the full digest), sha256_prefix (its first hex digits), md5_prefix (the MD5's first hex digits).
    unsupported: why ``--weights NAME`` refuses the entry for now (None: usable).
    """

    name: str
    architecture: str
    source: str
    kind: str
    url: str
    box_ap: float | None
    mask_ap: float | None
    size_mb: float | None
    sha256: str | None = None
    sha256_source: str | None = None
    sha256_prefix: str | None = None
    md5_prefix: str | None = None
    unsupported: str | None = None

    @property
    def file_name(self) -> str:
        """The published file name (kept in the cache: it carries the publisher's hash prefix)."""
        return self.url.rsplit("/", 1)[-1]


_TV = "https://download.pytorch.org/models/"
_D2 = "https://dl.fbaipublicfiles.com/detectron2/COCO-InstanceSegmentation/"

ENTRIES: tuple[WeightsEntry, ...] = (
    WeightsEntry(
        name="coco-r50-fpn",
        architecture="R50-FPN",
        source="torchvision (maskrcnn_resnet50_fpn, COCO_V1)",
        kind="detector",
        url=_TV + "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth",
        box_ap=37.9,
        mask_ap=34.6,
        size_mb=169.84,
        sha256_prefix="bf2d0c1e",
    ),
    WeightsEntry(
        name="coco-r50-fpn-v2",
        architecture="R50-FPN v2",
        source="torchvision (maskrcnn_resnet50_fpn_v2, COCO_V1)",
        kind="detector",
        url=_TV + "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth",
        box_ap=47.4,
        mask_ap=41.8,
        size_mb=177.219,
        sha256_prefix="73cbd019",
        unsupported=_TORCHVISION_V2,
    ),
    WeightsEntry(
        name="imagenet-r50",
        architecture="ResNet-50",
        source="torchvision (resnet50, IMAGENET1K_V1)",
        kind="backbone",
        url=_TV + "resnet50-0676ba61.pth",
        box_ap=None,
        mask_ap=None,
        size_mb=97.781,
        sha256_prefix="0676ba61",
    ),
    WeightsEntry(
        name="imagenet-r101",
        architecture="ResNet-101",
        source="torchvision (resnet101, IMAGENET1K_V1)",
        kind="backbone",
        url=_TV + "resnet101-63fe2227.pth",
        box_ap=None,
        mask_ap=None,
        size_mb=170.511,
        sha256_prefix="63fe2227",
    ),
    WeightsEntry(
        name="d2-r50-fpn-1x",
        architecture="R50-FPN",
        source="detectron2 (mask_rcnn_R_50_FPN_1x, model 137260431)",
        kind="detector",
        url=_D2 + "mask_rcnn_R_50_FPN_1x/137260431/model_final_a54504.pkl",
        box_ap=38.6,
        mask_ap=35.2,
        size_mb=None,
        md5_prefix="a54504",
    ),
    WeightsEntry(
        name="d2-r50-fpn-3x",
        architecture="R50-FPN",
        source="detectron2 (mask_rcnn_R_50_FPN_3x, model 137849600)",
        kind="detector",
        url=_D2 + "mask_rcnn_R_50_FPN_3x/137849600/model_final_f10217.pkl",
        box_ap=41.0,
        mask_ap=37.2,
        size_mb=None,
        md5_prefix="f10217",
    ),
    WeightsEntry(
        name="d2-r101-fpn-3x",
        architecture="R101-FPN",
        source="detectron2 (mask_rcnn_R_101_FPN_3x, model 138205316)",
        kind="detector",
        url=_D2 + "mask_rcnn_R_101_FPN_3x/138205316/model_final_a3ec72.pkl",
        box_ap=42.9,
        mask_ap=38.6,
        size_mb=None,
        md5_prefix="a3ec72",
    ),
    WeightsEntry(
        name="d2-x101-32x8d-fpn-3x",
        architecture="X101-32x8d-FPN",
        source="detectron2 (mask_rcnn_X_101_32x8d_FPN_3x, model 139653917)",
        kind="detector",
        url=_D2 + "mask_rcnn_X_101_32x8d_FPN_3x/139653917/model_final_2d9806.pkl",
        box_ap=44.3,
        mask_ap=39.5,
        size_mb=None,
        md5_prefix="2d9806",
    ),
)


def find_entry(name: str, entries: tuple[WeightsEntry, ...] | None = None) -> WeightsEntry | None:
    """The entry of ``entries`` (default: ENTRIES) called ``name``, case-insensitive; None if there is none."""
    wanted = name.strip().lower()
    return next((e for e in (ENTRIES if entries is None else entries) if e.name == wanted), None)
