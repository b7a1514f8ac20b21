"""Learning-rate schedule: linear warm-up, then step or cosine decay, as a pure function of the iteration.

Example (warm-up 100 from factor 0.001, step decay at 0.667 and 0.889 of 900 iterations, gamma 0.1):
iteration 0 -> 0.001, 50 -> 0.5005, 100..599 -> 1.0, 600..799 -> 0.1, 800.. -> 0.01.
"""

from __future__ import annotations

import math


def lr_factor(
    iteration: int,
    *,
    max_iter: int,
    schedule: str,
    steps: tuple[float, ...],
    gamma: float,
    warmup_iters: int,
    warmup_factor: float,
) -> float:
    """Multiplier of the base learning rate at ``iteration`` (0-based).

    steps: iterations where the step schedule multiplies by ``gamma``, as fractions of ``max_iter`` (values <= 1)
    or absolute iterations (values > 1).
    """
    if schedule == "step":
        boundaries = [s * max_iter if s <= 1 else s for s in steps]
        factor = gamma ** sum(iteration >= b for b in boundaries)
    elif schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * min(iteration, max_iter) / max(max_iter, 1)))
    else:
        raise ValueError(f"unknown schedule {schedule!r}; expected step or cosine")
    if iteration < warmup_iters:
        alpha = iteration / warmup_iters
        factor *= warmup_factor * (1.0 - alpha) + alpha
    return factor
