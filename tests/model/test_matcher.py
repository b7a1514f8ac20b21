import torch

from maskrcnn.model.matcher import BACKGROUND, IGNORE, Matcher
from maskrcnn.model.sampler import sample_balanced


def test_thresholds_are_inclusive_at_high_and_low():
    matcher = Matcher(high=0.7, low=0.3, allow_low_quality_matches=False)
    quality = torch.tensor([[0.7, 0.69, 0.3, 0.2999, 0.0], [0.1, 0.1, 0.1, 0.1, 0.95]])
    assert matcher(quality).tolist() == [0, IGNORE, IGNORE, BACKGROUND, 1]


def test_low_quality_matches_claim_best_predictions_including_ties():
    matcher = Matcher(high=0.7, low=0.3, allow_low_quality_matches=True)
    # gt 0's best IoU is 0.4, shared by predictions 0 and 2; gt 1's best is 0.1 at prediction 3
    quality = torch.tensor([[0.4, 0.35, 0.4, 0.0, 0.0], [0.0, 0.0, 0.0, 0.1, 0.0], [0.0, 0.0, 0.0, 0.0, 0.8]])
    matches = matcher(quality)
    assert matches.tolist() == [0, IGNORE, 0, 1, 2]
    without = Matcher(high=0.7, low=0.3, allow_low_quality_matches=False)(quality)
    assert without.tolist() == [IGNORE, IGNORE, IGNORE, BACKGROUND, 2]


def test_no_ground_truth_means_all_background():
    matches = Matcher(high=0.5, low=0.5, allow_low_quality_matches=False)(torch.zeros(0, 7))
    assert matches.tolist() == [BACKGROUND] * 7


def test_sampler_balances_and_respects_ignore():
    labels = torch.tensor([1] * 10 + [0] * 1000 + [-1] * 50)
    pos, neg = sample_balanced(labels, batch_size=256, positive_fraction=0.5)
    assert len(pos) == 10 and len(neg) == 246
    assert (labels[pos] == 1).all() and (labels[neg] == 0).all()
    assert len(set(pos.tolist()) | set(neg.tolist())) == 256
    many = torch.tensor([1] * 500 + [0] * 500)
    pos, neg = sample_balanced(many, batch_size=512, positive_fraction=0.25)
    assert len(pos) == 128 and len(neg) == 384
