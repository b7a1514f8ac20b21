"""Match predictions (anchors or proposals) to ground-truth boxes by IoU.

Shapes: G ground-truth boxes, P predictions; the quality matrix is (G, P).

Each prediction gets the index of its best ground truth when that IoU >= ``high``, ``BACKGROUND`` (-1) when it is
below ``low``, and ``IGNORE`` (-2) in between. With ``allow_low_quality_matches``, every ground truth also claims
the predictions that overlap it best (ties included), even below ``high``, so that no object is left without an
anchor (Faster R-CNN's RPN rule).

Example, high 0.7 and low 0.3: IoUs of one prediction with two boxes [0.2, 0.8] -> match 1; [0.5, 0.1] -> IGNORE;
[0.1, 0.2] -> BACKGROUND.
"""

from __future__ import annotations

import torch
from torch import Tensor

BACKGROUND = -1
IGNORE = -2


class Matcher:
    def __init__(self, *, high: float, low: float, allow_low_quality_matches: bool):
        if low > high:
            raise ValueError(f"low threshold {low} above high threshold {high}")
        self.high = high
        self.low = low
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, quality: Tensor) -> Tensor:
        """quality: Tensor[G, P] (IoU) -> matches: Tensor[P] int64, a ground-truth index, BACKGROUND or IGNORE."""
        if quality.shape[0] == 0:  # no ground truth: everything is background
            return torch.full((quality.shape[1],), BACKGROUND, dtype=torch.int64, device=quality.device)
        best_quality, matches = quality.max(dim=0)  # (P,), (P,)
        original = matches.clone() if self.allow_low_quality_matches else None
        matches[best_quality < self.low] = BACKGROUND
        matches[(best_quality >= self.low) & (best_quality < self.high)] = IGNORE
        if original is not None:
            best_per_gt = quality.max(dim=1).values  # (G,)
            _, claimed = torch.nonzero(quality == best_per_gt[:, None], as_tuple=True)
            matches[claimed] = original[claimed]
        return matches
