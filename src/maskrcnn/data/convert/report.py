"""What a conversion into COCO json produced and what it skipped, for the user to read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ConvertReport:
    """Counts and skip messages of one conversion.

    ``skipped`` holds one message per skipped item, each naming the file (and line, where there is one) and the reason,
    e.g. ``"labels/0001.txt:3: polygon has 2 points (need 3)"``.
    """

    output: Path
    images: int = 0
    annotations: int = 0
    categories: int = 0
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"wrote {self.output}: {self.images} images, {self.annotations} instances, {self.categories} categories"
        ]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)}:")
            lines.extend(f"  {message}" for message in self.skipped)
        return "\n".join(lines)
