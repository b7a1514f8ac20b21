"""Box-only instances (``has_mask`` False) train the RPN and the box head, and add nothing to the mask loss."""

from __future__ import annotations

import torch

from tiny import tiny_model, toy_image  # noqa: E402  (tests/model is on sys.path via conftest)


def _mask_head_grads(model, image, target) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(losses, gradient of every mask-head parameter) for one training step from a fixed seed."""
    torch.manual_seed(3)  # the same proposals and the same sampled RoIs every time
    model.zero_grad()
    losses = model([image], [target])
    sum(losses.values()).backward()
    return losses, {n: p.grad.clone() for n, p in model.roi_heads.mask_head.named_parameters()}


def test_an_image_of_box_only_instances_trains_with_an_exact_zero_mask_loss():
    model = tiny_model().train()
    image, target = toy_image(128, 128, [[10, 10, 60, 70], [70, 60, 120, 120]], [2, 1])
    target["has_mask"] = torch.tensor([False, False])
    target["masks"].zero_()
    losses, grads = _mask_head_grads(model, image, target)
    assert losses["loss_mask"].item() == 0.0  # exactly 0, not NaN
    assert losses["loss_box_reg"].item() > 0.0 and losses["loss_rpn_box"].item() > 0.0  # the boxes still train
    assert all(torch.count_nonzero(g) == 0 for g in grads.values())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_mask_head_gradients_come_only_from_instances_with_masks():
    model = tiny_model().train()
    image, target = toy_image(128, 128, [[10, 10, 60, 70], [70, 60, 120, 120]], [2, 1])
    target["has_mask"] = torch.tensor([True, False])
    target["masks"][1].zero_()
    losses, grads = _mask_head_grads(model, image, target)
    assert losses["loss_mask"].item() > 0.0

    # Whatever the box-only instance's mask holds, it is read by no one: the same loss and gradients.
    target["masks"][1, 60:120, 70:120] = 1
    same_losses, same_grads = _mask_head_grads(model, image, target)
    assert same_losses["loss_mask"].item() == losses["loss_mask"].item()
    assert all(torch.equal(grads[n], same_grads[n]) for n in grads)

    # Had its RoIs been background mask targets (an all-zero mask counted), the gradients would differ: the test can
    # tell the difference, and the box-only RoIs were not used as negatives.
    target["masks"][1].zero_()
    target["has_mask"] = torch.tensor([True, True])
    counted_losses, counted_grads = _mask_head_grads(model, image, target)
    assert counted_losses["loss_box_reg"].item() == losses["loss_box_reg"].item()  # the same RoIs were sampled
    assert counted_losses["loss_mask"].item() != losses["loss_mask"].item()
    assert not all(torch.equal(grads[n], counted_grads[n]) for n in grads)
