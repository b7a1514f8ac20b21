"""The loss-curve picture of a run, drawn from its metrics.jsonl."""

from __future__ import annotations

import io
import json
from pathlib import Path

from maskrcnn.io import atomic_write_bytes


def plot_loss_curve(metrics_path: Path, output: Path) -> None:
    """Total and per-term training losses against the iteration, log scale, as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    records = []
    for line in metrics_path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if "loss" in record:
            records.append(record)
    if not records:
        return
    iterations = [r["iteration"] for r in records]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    keys = ["loss"] + sorted(k for k in records[-1] if k.startswith("loss_"))
    for key in keys:
        ax.plot(iterations, [max(r.get(key, float("nan")), 1e-6) for r in records], label=key,
                linewidth=2.0 if key == "loss" else 1.0)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(output, buffer.getvalue())
