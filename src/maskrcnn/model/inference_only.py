"""The mark of a module that only inference may use: the leaves ``prepare_for_inference`` puts into a model."""

from __future__ import annotations

from torch import nn


class InferenceOnly(nn.Module):
    """Refuses ``train()``: its weights are derived (folded, merged, re-laid out) from a model's, and training it
    would change nothing that a checkpoint of that model holds."""

    def train(self, mode: bool = True) -> nn.Module:
        if mode:
            raise RuntimeError(f"{type(self).__name__} is inference-only; train the model built by maskrcnn.model.build")
        return super().train(False)
