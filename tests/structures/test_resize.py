"""The one resize rule: sizes as torchvision computes them for its weights, PIL's antialiased pixels for training,
the same rule in the data pipeline and in the model, and the traced (ONNX) forms of the antialiased filter and of
PIL's fixed-point resize."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from maskrcnn.config import preset
from maskrcnn.data.transforms import ResizeShortestEdge
from maskrcnn.model.build import build_model
from maskrcnn.structures.resize import _antialiased_in_graph, _pil_bilinear_in_graph, resize_image, resized_shape

SIZES = [(480, 640), (512, 512), (1365, 2048), (681, 1024), (97, 333), (600, 900), (333, 500), (427, 640), (1, 7)]


def test_torchvision_rule_gives_torchvisions_sizes_and_pixels():
    transform = GeneralizedRCNNTransform(800, 1333, [0.0] * 3, [1.0] * 3).eval()
    g = torch.Generator().manual_seed(0)
    for height, width in SIZES:
        image = torch.rand(3, height, width, generator=g)
        batch, _ = transform([image])
        size = resized_shape(height, width, short_size=800, max_size=1333, rule="torchvision")
        assert batch.image_sizes[0] == size
        if height * width < 10**6:
            got = resize_image(image, size, rule="torchvision")
            assert torch.equal(got, batch.tensors[0, :, : size[0], : size[1]])


def test_antialias_rule_rounds_sizes_and_shrinks_uint8_images_as_pil():
    assert resized_shape(480, 640, short_size=800, max_size=1333) == (800, 1067)  # 1066.7 rounded
    rng = np.random.default_rng(0)
    image = (rng.random((240, 321, 3)) * 255).astype(np.uint8)
    for size in [(120, 160), (67, 90), (240, 100)]:
        expected = np.asarray(Image.fromarray(image).resize(size[::-1], Image.BILINEAR)).astype(int)
        got = resize_image(torch.from_numpy(image).permute(2, 0, 1), size, rule="antialias").permute(1, 2, 0)
        difference = np.abs(got.numpy().astype(int) - expected)
        assert difference.max() <= 1 and (difference > 0).mean() < 1e-2  # fixed-point rounding, both uint8 kernels


@pytest.mark.parametrize("rule", ["antialias", "torchvision"])
def test_training_pipeline_and_model_resize_alike(rule):
    """The data pipeline (uint8 in, uint8 out) and the model at inference (normalised floats) give the same sizes,
    and pixels that differ by the uint8 rounding of the training image only (after each of the filter's two passes,
    so up to one level)."""
    config = preset("small").model
    inputs = dataclasses.replace(config.input, resize=rule, min_size_test=96, max_size_test=200)
    model = build_model(dataclasses.replace(config, input=inputs)).eval()
    rng = np.random.default_rng(1)
    for height, width in [(240, 320), (50, 70), (97, 333)]:
        image = (rng.random((height, width, 3)) * 255).astype(np.uint8)
        resized, _ = ResizeShortestEdge((96,), 200, rule=rule)(image, {}, rng)
        batch = model.preprocess([torch.from_numpy(image).permute(2, 0, 1)])
        h, w = batch.image_sizes[0]
        assert (h, w) == resized.shape[:2]
        seen = batch.tensor[0, :, :h, :w] * model.pixel_std + model.pixel_mean  # back to [0, 1]
        trained = torch.from_numpy(resized).permute(2, 0, 1).float() / 255.0
        assert (seen - trained).abs().max() <= 1.01 / 255


def test_traced_antialiased_filter_equals_torchs():
    g = torch.Generator().manual_seed(0)
    for (height, width), (h, w) in [((64, 80), (32, 41)), ((50, 50), (80, 80)), ((97, 333), (51, 200)), ((30, 40), (7, 100))]:
        image = torch.rand(3, height, width, generator=g) * 4 - 2
        expected = F.interpolate(image[None], size=(h, w), mode="bilinear", antialias=True)[0]
        got = _antialiased_in_graph(image, (torch.tensor(h), torch.tensor(w)))
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_traced_pil_resize_equals_pils_for_landscape_and_square_images():
    """detectron2's rule resizes uint8 images by PIL itself; its ONNX form emulates PIL's fixed-point arithmetic and
    gives the same bytes for the sizes the rule makes of landscape and square images (shrinking and enlarging). On some
    portrait downscales this Pillow chooses its passes otherwise, and a few pixels differ by one grey level."""
    rng = np.random.default_rng(0)
    for height, width in [(480, 640), (512, 512), (1365, 2048), (97, 333), (333, 500), (40, 61)]:
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        for short, longest in ((800, 1333), (64, 100)):
            h, w = resized_shape(height, width, short_size=short, max_size=longest, rule="detectron2")
            expected = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
            got = _pil_bilinear_in_graph(torch.from_numpy(image).permute(2, 0, 1), (torch.tensor(h), torch.tensor(w)))
            np.testing.assert_array_equal(got.permute(1, 2, 0).numpy(), expected)


def detectron2_output_shape(height: int, width: int, short: int, longest: int) -> tuple[int, int]:
    """detectron2's ResizeShortestEdge.get_output_shape, in Python floats as it computes them."""
    scale = short * 1.0 / min(height, width)
    new_h, new_w = (short, scale * width) if height < width else (scale * height, short)
    if max(new_h, new_w) > longest:
        scale = longest * 1.0 / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


def test_detectron2_rule_gives_detectron2s_sizes_to_the_last_rounding():
    """Sizes that land on a half (600 x 1200 -> 666.5 x 1333) round as Python's floats do, not one pixel off."""
    cases = [(600, 1200), (300, 600), (384, 630), (1468, 734)] + [(h, w) for h in range(16, 1500, 37) for w in range(16, 1500, 41)]
    for height, width in cases:
        for short, longest in ((800, 1333), (640, 1066)):
            got = resized_shape(height, width, short_size=short, max_size=longest, rule="detectron2")
            assert got == detectron2_output_shape(height, width, short, longest), (height, width, short, longest)
