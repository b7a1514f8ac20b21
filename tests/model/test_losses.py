import torch

from tiny import tiny_model, toy_image  # noqa: E402  (tests/model is on sys.path via conftest)


def test_image_without_objects_gives_exact_zero_box_and_mask_losses():
    model = tiny_model().train()
    image, target = toy_image(128, 128, [], [])
    target["masks"] = torch.zeros(0, 128, 128, dtype=torch.uint8)
    losses = model([image], [target])
    assert losses["loss_rpn_box"].item() == 0.0
    assert losses["loss_box_reg"].item() == 0.0
    assert losses["loss_mask"].item() == 0.0
    # the classifiers still learn "background": their losses are positive
    assert losses["loss_rpn_objectness"].item() > 0.0 and losses["loss_cls"].item() > 0.0
    total = sum(losses.values())
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_losses_are_named_and_positive_with_objects():
    model = tiny_model().train()
    image, target = toy_image(128, 128, [[10, 10, 60, 70]], [2])
    losses = model([image], [target])
    assert set(losses) == {"loss_rpn_objectness", "loss_rpn_box", "loss_cls", "loss_box_reg", "loss_mask"}
    assert all(v.item() > 0 for v in losses.values())


def test_crowd_region_anchors_are_not_negatives():
    model = tiny_model().train()
    image, target = toy_image(128, 128, [[10, 10, 40, 40]], [1])
    anchors = torch.cat(model.rpn.anchor_generator((128, 128), [torch.zeros(1, 1, 128 // s, 128 // s) for s in (4, 8, 16, 32, 64)]))
    labels_plain, _ = model.rpn._label_anchors(anchors, [target])
    target["crowd_boxes"] = torch.tensor([[60.0, 60.0, 128.0, 128.0]])
    labels_crowd, _ = model.rpn._label_anchors(anchors, [target])
    inside = (anchors[:, 0] >= 62) & (anchors[:, 1] >= 62) & (anchors[:, 2] <= 126) & (anchors[:, 3] <= 126)
    assert inside.any()
    assert (labels_plain[0][inside] == 0).all()  # background without the crowd region
    assert (labels_crowd[0][inside] == -1).all()  # ignored with it
    assert torch.equal(labels_plain[0][labels_plain[0] == 1], labels_crowd[0][labels_plain[0] == 1])
