import torch
from torchvision.ops import box_iou

from tiny import tiny_model, two_toy_images


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
