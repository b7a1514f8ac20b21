import math

import torch

from maskrcnn.structures.boxes import BoxCoder, box_ioa, clip_boxes


def random_boxes(n: int, generator: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator) * 500
    wh = torch.rand(n, 2, generator=generator) * 300 + 8  # size ratios stay below the exp() clamp
    return torch.cat([xy, xy + wh], dim=1)


def test_encode_decode_round_trip():
    g = torch.Generator().manual_seed(0)
    for weights in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]:
        coder = BoxCoder(weights)
        refs, targets = random_boxes(200, g), random_boxes(200, g)
        decoded = coder.decode(coder.encode(targets, refs), refs)
        torch.testing.assert_close(decoded, targets, rtol=0, atol=1e-3)


def test_known_deltas():
    coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
    deltas = coder.encode(torch.tensor([[5.0, 0.0, 15.0, 10.0]]), torch.tensor([[0.0, 0.0, 10.0, 10.0]]))
    torch.testing.assert_close(deltas, torch.tensor([[0.5, 0.0, 0.0, 0.0]]))
    weighted = BoxCoder((10.0, 10.0, 5.0, 5.0)).encode(torch.tensor([[0.0, 0.0, 20.0, 10.0]]),
                                                       torch.tensor([[0.0, 0.0, 10.0, 10.0]]))
    torch.testing.assert_close(weighted, torch.tensor([[5.0, 0.0, 5.0 * math.log(2.0), 0.0]]))


def test_decode_per_class_columns_and_clamp():
    coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
    ref = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    # two classes: identity, and an enormous dw that must be clamped at log(1000/16)
    deltas = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 100.0, 0.0]])
    boxes = coder.decode(deltas, ref).view(2, 4)
    torch.testing.assert_close(boxes[0], ref[0])
    assert torch.isfinite(boxes).all()
    torch.testing.assert_close(boxes[1, 2] - boxes[1, 0], torch.tensor(1000.0), rtol=1e-5, atol=1e-3)


def test_clip_and_ioa():
    clipped = clip_boxes(torch.tensor([[-5.0, -2.0, 30.0, 50.0]]), (40, 20))
    torch.testing.assert_close(clipped, torch.tensor([[0.0, 0.0, 20.0, 40.0]]))
    ioa = box_ioa(torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0]]), torch.tensor([[0.0, 0.0, 100.0, 10.0]]))
    torch.testing.assert_close(ioa[:, 0], torch.tensor([1.0, 0.5]))
