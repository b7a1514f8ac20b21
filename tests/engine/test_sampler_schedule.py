import itertools

import pytest

from maskrcnn.data.loader import GroupedBatchSampler
from maskrcnn.engine.schedule import lr_factor


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_stream_is_deterministic_and_resumes_exactly():
    ratios = [1.5, 0.6, 1.2, 1.0, 0.7, 1.8, 0.5, 1.3, 1.1, 0.9]
    full = take(GroupedBatchSampler(ratios, batch_size=2, seed=7), 12)
    assert full == take(GroupedBatchSampler(ratios, batch_size=2, seed=7), 12)
    assert full[5:] == take(GroupedBatchSampler(ratios, batch_size=2, seed=7, start_iter=5), 7)
    assert full != take(GroupedBatchSampler(ratios, batch_size=2, seed=8), 12)
    for batch in full:  # landscape and portrait images never share a batch
        assert len({ratios[i] >= 1.0 for i, _ in batch}) == 1
    # every image comes once per epoch, up to the images still waiting in a bucket
    first = [i for batch in full[:4] for i, _ in batch]
    assert len(set(first)) == len(first)


def test_augmentation_seeds_follow_the_image_and_epoch():
    ratios = [1.0] * 4
    batches = take(GroupedBatchSampler(ratios, batch_size=4, seed=0), 2)
    assert sorted(i for i, _ in batches[0]) == sorted(i for i, _ in batches[1]) == [0, 1, 2, 3]
    assert dict(batches[0]) != dict(batches[1])  # a new epoch augments each image differently


def test_processes_get_disjoint_shards_of_each_epoch():
    ratios = [1.0] * 8
    rank0 = take(GroupedBatchSampler(ratios, batch_size=2, seed=3, rank=0, world_size=2), 2)
    rank1 = take(GroupedBatchSampler(ratios, batch_size=2, seed=3, rank=1, world_size=2), 2)
    seen0 = {i for b in rank0 for i, _ in b}
    seen1 = {i for b in rank1 for i, _ in b}
    assert seen0.isdisjoint(seen1) and seen0 | seen1 == set(range(8))


def test_schedule_values():
    kw = dict(max_iter=900, schedule="step", steps=(0.667, 0.889), gamma=0.1, warmup_iters=100, warmup_factor=0.001)
    assert lr_factor(0, **kw) == pytest.approx(0.001)
    assert lr_factor(50, **kw) == pytest.approx(0.5005)
    assert lr_factor(100, **kw) == 1.0 and lr_factor(599, **kw) == 1.0
    assert lr_factor(601, **kw) == pytest.approx(0.1) and lr_factor(801, **kw) == pytest.approx(0.01)
    cos = dict(kw, schedule="cosine", warmup_iters=0)
    assert lr_factor(0, **cos) == 1.0 and lr_factor(450, **cos) == pytest.approx(0.5)
    assert lr_factor(900, **cos) == pytest.approx(0.0)
    absolute = dict(kw, steps=(300, 700), warmup_iters=0)
    assert lr_factor(299, **absolute) == 1.0 and lr_factor(300, **absolute) == pytest.approx(0.1)
