"""RoIAlign against a pure-Python bilinear reference, and the FPN level rule."""

import math

import pytest
import torch

from maskrcnn.model.poolers import MultiLevelRoIAlign, assign_levels


def bilinear(feature: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """feature: (C, H, W); value at continuous (y, x), pixel centres at integers; 0 beyond one pixel outside."""
    _, height, width = feature.shape
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return torch.zeros(feature.shape[0], dtype=torch.float64)
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= height - 1:
        y0 = y1 = height - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= width - 1:
        x0 = x1 = width - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    f = feature.double()
    return (
        (1 - ly) * (1 - lx) * f[:, y0, x0] + (1 - ly) * lx * f[:, y0, x1] + ly * (1 - lx) * f[:, y1, x0]
        + ly * lx * f[:, y1, x1]
    )  # fmt: skip


def reference_roi_align(feature, box, *, scale, size, sampling_ratio, aligned):
    """feature: (C, H, W), box: (x1, y1, x2, y2) image pixels -> (C, size, size) float64."""
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (float(v) * scale - offset for v in box)
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:  # the original form never pools from less than one feature pixel
        roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
    bin_w, bin_h = roi_w / size, roi_h / size
    grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / size)
    grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / size)
    out = torch.zeros(feature.shape[0], size, size, dtype=torch.float64)
    for ph in range(size):
        for pw in range(size):
            acc = torch.zeros(feature.shape[0], dtype=torch.float64)
            for iy in range(grid_h):
                y = y1 + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                for ix in range(grid_w):
                    x = x1 + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                    acc += bilinear(feature, y, x)
            out[:, ph, pw] = acc / max(grid_h * grid_w, 1)
    return out


BOXES = [
    [3.0, 5.0, 40.0, 31.0],  # ordinary
    [10.2, 11.7, 12.1, 13.3],  # smaller than a feature pixel
    [-12.0, -6.0, 20.0, 18.0],  # partly outside the image
    [50.0, 40.0, 75.5, 64.0],  # reaching the bottom-right border
]


@pytest.mark.parametrize("aligned", [False, True])
def test_single_level_matches_reference(aligned):
    g = torch.Generator().manual_seed(0)
    feature = torch.randn(1, 3, 16, 19, generator=g)  # stride 4: a 64 x 76 image
    pooler = MultiLevelRoIAlign(output_size=5, strides=(4,), sampling_ratio=2, aligned=aligned)
    out = pooler([feature], [torch.tensor(BOXES)])
    assert out.shape == (len(BOXES), 3, 5, 5)
    for i, box in enumerate(BOXES):
        expected = reference_roi_align(feature[0], box, scale=0.25, size=5, sampling_ratio=2, aligned=aligned)
        torch.testing.assert_close(out[i].double(), expected, rtol=1e-5, atol=1e-5)


def test_aligned_modes_differ_by_half_pixel_shift():
    feature = torch.arange(64.0).view(1, 1, 8, 8)  # value = 8 * y + x: bilinear reproduces it exactly
    box = torch.tensor([[2.0, 2.0, 6.0, 6.0]])
    legacy = MultiLevelRoIAlign(output_size=1, strides=(1,), sampling_ratio=1, aligned=False)([feature], [box])
    aligned = MultiLevelRoIAlign(output_size=1, strides=(1,), sampling_ratio=1, aligned=True)([feature], [box])
    # one sample at the box centre (4, 4); aligned mode reads it at (3.5, 3.5)
    assert legacy.item() == pytest.approx(8 * 4 + 4)
    assert aligned.item() == pytest.approx(8 * 3.5 + 3.5)


def test_level_rule_and_multi_level_pooling():
    boxes = torch.tensor(
        [[0.0, 0.0, 224.0, 224.0], [0.0, 0.0, 112.0, 112.0], [0, 0, 448.0, 448.0], [0, 0, 10, 10], [0, 0, 2000, 900.0]]
    )
    assert assign_levels(boxes, min_level=2, max_level=5).tolist() == [2, 1, 3, 0, 3]  # P4, P3, P5, P2, P5

    g = torch.Generator().manual_seed(1)
    features = [torch.randn(2, 2, 512 // s, 512 // s, generator=g) for s in (4, 8, 16, 32)]
    per_image = [boxes[:3], boxes[3:]]
    out = MultiLevelRoIAlign(output_size=3, strides=(4, 8, 16, 32), sampling_ratio=2, aligned=True)(features, per_image)
    for image, image_boxes, offset in ((0, per_image[0], 0), (1, per_image[1], 3)):
        levels = assign_levels(image_boxes, min_level=2, max_level=5)
        for j, (box, level) in enumerate(zip(image_boxes, levels.tolist())):
            stride = 4 * 2**level
            expected = reference_roi_align(
                features[level][image], box.tolist(), scale=1 / stride, size=3, sampling_ratio=2, aligned=True
            )
            torch.testing.assert_close(out[offset + j].double(), expected, rtol=1e-5, atol=1e-5)
