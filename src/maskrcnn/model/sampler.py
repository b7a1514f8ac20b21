"""Sample a fixed-size, class-balanced subset of labelled predictions for a loss.

labels: Tensor[P] int64 with -1 = ignore, 0 = background, >= 1 = foreground. At most
``round(batch_size * positive_fraction)`` foreground samples are drawn; background fills the rest of ``batch_size``
as far as it goes. Example: batch 256, fraction 0.5, 10 foreground and 1000 background -> 10 + 246 samples.
"""

from __future__ import annotations

import torch
from torch import Tensor


def sample_balanced(labels: Tensor, *, batch_size: int, positive_fraction: float) -> tuple[Tensor, Tensor]:
    """-> (positive indices, negative indices): Tensor[p] and Tensor[n] int64 into ``labels``, p + n <= batch_size."""
    positive = torch.nonzero(labels >= 1).squeeze(1)
    negative = torch.nonzero(labels == 0).squeeze(1)
    num_pos = min(int(batch_size * positive_fraction), positive.numel())
    num_neg = min(batch_size - num_pos, negative.numel())
    pos_pick = torch.randperm(positive.numel(), device=labels.device)[:num_pos]
    neg_pick = torch.randperm(negative.numel(), device=labels.device)[:num_neg]
    return positive[pos_pick], negative[neg_pick]
