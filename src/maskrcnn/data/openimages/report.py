"""What one ``maskrcnn openimages download`` run wrote, fetched, reused, skipped and failed, for the user to read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SHOWN = 10  # messages listed per kind in the summary; all are in the log file


@dataclass
class DownloadReport:
    """``skipped``: instances or images left out for good (empty or corrupt masks, unsafe names), one message each;
    ``failed``: files that could not be fetched after the retries: the dataset is partial and a re-run fetches them.
    ``instances_per_class``: DisplayName -> instances written. ``counts``: ``coco_writer.dataset_counts`` (masks,
    box_only, group_of, negative_images); ``unmatched_boxes`` / ``unmatched_masks``: box rows without a mask (the
    box-only instances and regions) and masks without a box row; ``box_rows_scanned``: box CSV lines filtered by
    this run (0 when its rows of the chosen images were already there)."""

    output: Path
    split: str
    images: int = 0
    annotations: int = 0
    instances_per_class: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    unmatched_boxes: int = 0
    unmatched_masks: int = 0
    box_rows_scanned: int = 0
    box_rows_kept: int = 0
    whole_box_csv: bool = False
    chosen_images: int = 0
    images_fetched: int = 0
    images_reused: int = 0
    masks_fetched: int = 0
    masks_reused: int = 0
    whole_shards: list[str] = field(default_factory=list)
    bytes_fetched: int = 0
    requests: int = 0
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    log: Path | None = None

    @property
    def complete(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        per_class = ", ".join(f"{name} {n}" for name, n in self.instances_per_class.items())
        lines = [
            f"wrote {self.output}: {self.images} images, {self.annotations} instances ({per_class}) "
            f"from the {self.split} split ({self.chosen_images} images chosen)",
            f"  {self.counts.get('masks', 0)} instances with masks, {self.counts.get('box_only', 0)} box-only "
            f"instances, {self.counts.get('group_of', 0)} group-of regions, {self.counts.get('negative_images', 0)} "
            f"verified-negative images; {self.unmatched_boxes} boxes had no mask, {self.unmatched_masks} masks had "
            "no box",
            f"fetched {_size(self.bytes_fetched)} in {self.requests} requests: {self.images_fetched} images, "
            f"{self.masks_fetched} masks; already there: {self.images_reused} images, {self.masks_reused} masks",
        ]
        if self.box_rows_scanned:
            lines.append(f"streamed {self.box_rows_scanned:,} rows of the box CSV, kept the {self.box_rows_kept:,} of the "
                         "chosen images")
        if self.whole_box_csv:
            lines.append("the server ignored Range requests: downloaded the box CSV whole, filtered it, deleted it")
        if self.whole_shards:
            shards = ", ".join(self.whole_shards)
            lines.append(f"the server ignored Range requests: downloaded whole mask shards {shards}")
        for title, messages in (("skipped", self.skipped), ("FAILED after retries", self.failed)):
            if messages:
                lines.append(f"{title}: {len(messages)}")
                lines.extend(f"  {m}" for m in messages[:SHOWN])
                if len(messages) > SHOWN:
                    where = f", all in {self.log}" if self.log else ""
                    lines.append(f"  ... and {len(messages) - SHOWN} more{where}")
        if self.failed:
            lines.append("the dataset is PARTIAL: run the same command again to fetch what failed")
        return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
