"""Known-answer tests for the ranking metrics on hand-computed rankings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model.evaluation.metrics import (
    category_entropy,
    coverage,
    entropy,
    hit_ranks,
    hit_rate,
    ndcg,
    ndcg_by_popularity,
    ndcg_gains,
    ranking_metrics,
)


def test_hand_computed_hr_and_ndcg() -> None:
    topk = np.array([[5, 1, 2], [3, 9, 4], [7, 8, 6]])
    ranks = hit_ranks(topk, np.array([5, 9, 0]))
    assert ranks.tolist() == [0, 1, -1]
    assert hit_rate(ranks, 1) == pytest.approx(1 / 3)
    assert hit_rate(ranks, 3) == pytest.approx(2 / 3)
    assert ndcg(ranks, 1) == pytest.approx(1 / 3)
    assert ndcg(ranks, 3) == pytest.approx((1 + 1 / math.log2(3)) / 3)
    assert ndcg_gains(ranks, 3) == pytest.approx([1.0, 1 / math.log2(3), 0.0])  # per user; ndcg is their mean
    assert ndcg_gains(ranks, 1) == pytest.approx([1.0, 0.0, 0.0])
    assert ndcg(np.array([], dtype=np.int64), 10) == 0.0


def test_ndcg_by_popularity_splits_users_by_their_targets_training_count() -> None:
    ranks, targets = np.array([0, -1, 1, 2]), np.array([4, 5, 6, 5])
    popularity = np.array([0, 0, 0, 0, 1, 9, 3])  # item 5 the head, 6 the torso, 4 the tail
    # users ordered 1, 3 (item 5, ties in user order), 2, 0: thirds [1, 3], [2], [0]
    assert ndcg_by_popularity(ranks, targets, popularity) == pytest.approx([(0 + 1 / 2) / 2, 1 / math.log2(3), 1.0])
    assert ndcg_by_popularity(ranks, targets, popularity, k=1, groups=2) == pytest.approx([0.0, 0.5])
    assert ndcg_by_popularity(ranks[:1], targets[:1], popularity, groups=3) == [1.0, 0.0, 0.0]  # empty parts


def test_coverage_and_entropy() -> None:
    topk = np.array([[0, 1], [0, 2]])
    assert coverage(topk, 2, n_items=8) == pytest.approx(3 / 8)
    # exposures: 0 twice, 1 once, 2 once -> p = (1/2, 1/4, 1/4)
    assert entropy(topk) == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
    assert entropy([4, 4, 4]) == 0.0
    assert category_entropy(topk, 2, ["a", "a", "b", None]) == pytest.approx(
        -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))


def test_ranking_metrics_keys_and_perfect_ranking() -> None:
    topk = np.tile(np.arange(10), (4, 1))
    m = ranking_metrics(topk, np.zeros(4, dtype=int), n_items=20)
    assert set(m) == {"hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10", "coverage@10", "entropy@10"}
    assert m["hr@1"] == m["ndcg@10"] == 1.0
    assert m["coverage@10"] == 0.5
    assert m["entropy@10"] == pytest.approx(math.log(10))
