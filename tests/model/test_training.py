import dataclasses

import torch
from torchvision.ops import box_iou

import maskrcnn
from maskrcnn.checkpoint import save_checkpoint
from maskrcnn.config import InputConfig, load_config, preset
from maskrcnn.model.build import build_model

from tiny import tiny_model, two_toy_images
from torchvision_oracle import Detections, match_detections


def test_training_lowers_the_loss_and_overfits_two_images():
    torch.manual_seed(0)
    model = tiny_model().train()
    data = two_toy_images()
    images, targets = [im for im, _ in data], [t for _, t in data]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.02, momentum=0.9, weight_decay=1e-4)
    history = []
    for _ in range(120):
        losses = model(images, targets)
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert sum(history[-10:]) / 10 < 0.25 * sum(history[:3]) / 3

    model.eval()
    with torch.no_grad():
        outputs = model(images)
    for out, target in zip(outputs, targets):
        confident = out["scores"] > 0.5
        boxes, labels, masks = out["boxes"][confident], out["labels"][confident], out["masks"][confident]
        # every object is found, with its class, box and mask
        iou = box_iou(target["boxes"], boxes)
        best = iou.max(dim=1)
        assert (best.values > 0.8).all(), best.values
        assert torch.equal(labels[best.indices], target["labels"])
        gt, pred = target["masks"].bool(), masks[best.indices]
        mask_iou = (gt & pred).flatten(1).sum(1) / (gt | pred).flatten(1).sum(1)
        assert (mask_iou > 0.8).all(), mask_iou
        # and nothing else is found confidently
        assert confident.sum() <= len(target["boxes"]) + 1


def test_r50_fpn_v2_preset_trains_one_step_and_round_trips_through_its_checkpoint(tmp_path):
    """The v2 architecture trains: every BatchNorm of the FPN and heads (not frozen) gets a gradient and updates its
    statistics; saved with its config, it loads back through ``maskrcnn.load`` (norms folded, Winograd RPN head)
    and gives the trained model's detections."""
    config = preset("r50_fpn_v2")
    model_config = dataclasses.replace(
        config.model,
        num_classes=3,
        rpn=dataclasses.replace(config.model.rpn, pre_nms_topk_train=200, post_nms_topk_train=100,
                                pre_nms_topk_test=100, post_nms_topk_test=50),
        roi_heads=dataclasses.replace(config.model.roi_heads, batch_size_per_image=32, score_thresh=0.0),
        input=InputConfig(min_size_train=(128,), max_size_train=160, min_size_test=128, max_size_test=160),
    )
    config = dataclasses.replace(config, model=model_config)
    assert load_config("r50_fpn_v2") == preset("r50_fpn_v2")
    torch.manual_seed(0)
    model = build_model(model_config).train()
    data = two_toy_images()
    images, targets = [im.float() / 255 for im, _ in data], [t for _, t in data]
    before = model.roi_heads.box_head.norms[0].running_mean.clone()
    losses = model(images, targets)
    assert set(losses) >= {"loss_rpn_objectness", "loss_cls", "loss_mask"}
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    loss.backward()
    heads = (model.backbone.fpn.output_norms[0], model.rpn.head.extra_convs[0], model.roi_heads.box_head.convs[3],
             model.roi_heads.box_head.norms[3], model.roi_heads.mask_head.norms[0])
    for module in heads:
        assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0, module
    assert not torch.equal(model.roi_heads.box_head.norms[0].running_mean, before)
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01).step()

    path = tmp_path / "v2.pth"
    save_checkpoint(path, model=model, config=config, class_names=["a", "b", "c"], category_ids=[1, 2, 3])
    predictor = maskrcnn.load(path)
    assert predictor.config == config
    model.eval()
    image = (images[0] * 255).round().to(torch.uint8)
    with torch.no_grad():
        expected = model([image.float() / 255])[0]
    got = predictor.predict(image.permute(1, 2, 0).numpy(), score_threshold=0.0)[0]
    expected = Detections(*(expected[k].numpy() for k in ("boxes", "labels", "scores", "masks")))
    match = match_detections(expected, got)
    assert len(got.scores) == len(expected.scores) > 0 and match.matched >= 0.97 * match.total
    assert min(match.mask_ious) > 0.98
