import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator as TorchvisionAnchorGenerator
from torchvision.models.detection.image_list import ImageList as TorchvisionImageList

from maskrcnn.model.anchors import AnchorGenerator, base_anchors


def test_known_grid_from_torchvision_suite():
    # torchvision's test: size 10, ratio 1, a 15 x 15 image with a 3 x 3 feature map.
    expected = torch.tensor(
        [
            [-5.0, -5.0, 5.0, 5.0], [0.0, -5.0, 10.0, 5.0], [5.0, -5.0, 15.0, 5.0],
            [-5.0, 0.0, 5.0, 10.0], [0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0],
            [-5.0, 5.0, 5.0, 15.0], [0.0, 5.0, 10.0, 15.0], [5.0, 5.0, 15.0, 15.0],
        ]
    )  # fmt: skip
    feature = torch.zeros(2, 4, 3, 3)
    for from_image in (False, True):
        gen = AnchorGenerator(sizes=(10,), aspect_ratios=(1.0,), strides=(5,), strides_from_image_size=from_image)
        (anchors,) = gen((15, 15), [feature])
        torch.testing.assert_close(anchors, expected, rtol=0, atol=0)


def test_base_anchors_rounded_ratio_major():
    anchors = base_anchors(32, (0.5, 1.0, 2.0))
    # ratio = height / width: 0.5 is wide (w = 32 * sqrt 2 = 45.25 -> half 22.6 -> 23), 2 is tall
    expected = torch.tensor([[-23.0, -11.0, 23.0, 11.0], [-16.0, -16.0, 16.0, 16.0], [-11.0, -23.0, 11.0, 23.0]])
    torch.testing.assert_close(anchors, expected, rtol=0, atol=0)


def test_fpn_anchors_equal_torchvision_on_odd_padded_size():
    # 800 x 1088 padded batch: P6 is 13 x 17, so torchvision's stride on y is 800 // 13 = 61, not 64.
    sizes, ratios, strides = (32, 64, 128, 256, 512), (0.5, 1.0, 2.0), (4, 8, 16, 32, 64)
    grids = [(200, 272), (100, 136), (50, 68), (25, 34), (13, 17)]
    features = [torch.zeros(1, 1, h, w) for h, w in grids]
    reference = TorchvisionAnchorGenerator(tuple((s,) for s in sizes), (ratios,) * 5)
    images = TorchvisionImageList(torch.zeros(1, 3, 800, 1088), [(800, 1066)])
    expected = reference(images, features)[0]

    ours = AnchorGenerator(sizes=sizes, aspect_ratios=ratios, strides=strides, strides_from_image_size=True)
    torch.testing.assert_close(torch.cat(ours((800, 1088), features)), expected, rtol=0, atol=0)

    true_strides = AnchorGenerator(sizes=sizes, aspect_ratios=ratios, strides=strides)
    p6 = true_strides((800, 1088), features)[-1]
    # with the true stride the last row of P6 anchors is centred at 12 * 64 = 768 (torchvision: 12 * 61)
    assert ((p6[:, 1] + p6[:, 3]) / 2).max().item() == 12 * 64
    assert ((expected[-13 * 17 * 3 :, 1] + expected[-13 * 17 * 3 :, 3]) / 2).max().item() == 12 * 61
