"""The dispatch policy's arithmetic: search rings, retry backoff, validation."""

from __future__ import annotations

import pytest

from ridehail.dispatch import DispatchPolicy, Strategy


def test_rings_grow_by_the_step_and_end_at_the_maximum() -> None:
    assert DispatchPolicy(first_radius_m=1_000, radius_step_m=1_000, radius_m=5_000).rings() == [
        1_000,
        2_000,
        3_000,
        4_000,
        5_000,
    ]
    # A step that overshoots still ends exactly at the maximum.
    assert DispatchPolicy(first_radius_m=800, radius_step_m=1_500, radius_m=3_000).rings() == [
        800,
        2_300,
        3_000,
    ]
    assert DispatchPolicy(first_radius_m=2_000, radius_m=2_000).rings() == [2_000]


def test_a_fruitless_search_retries_less_often_as_it_ages() -> None:
    policy = DispatchPolicy(retry_interval_s=2.0, retry_max_s=10.0)
    assert policy.retry_after_s(0) == 2.0
    assert policy.retry_after_s(19) == 2.0
    assert policy.retry_after_s(50) == 5.0
    assert policy.retry_after_s(3_600) == 10.0
    # A retry interval above the cap wins over the cap.
    assert DispatchPolicy(retry_interval_s=20.0, retry_max_s=10.0).retry_after_s(0) == 20.0


def test_what_a_round_looks_for_depends_on_the_strategy() -> None:
    assert DispatchPolicy().offers_per_round == 1 and DispatchPolicy().wanted == 1
    broadcast = DispatchPolicy(strategy=Strategy.BROADCAST, broadcast_k=4)
    assert broadcast.offers_per_round == 4 and broadcast.wanted == 4
    batch = DispatchPolicy(strategy=Strategy.BATCH, batch_k=7)
    assert batch.offers_per_round == 1 and batch.wanted == 7


@pytest.mark.parametrize(
    "bad",
    [
        {"first_radius_m": 0},
        {"first_radius_m": 6_000, "radius_m": 5_000},
        {"radius_step_m": 0},
        {"candidates": 50, "max_candidates": 20},
    ],
)
def test_inconsistent_policies_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"must|need"):
        DispatchPolicy(**bad)  # type: ignore[arg-type]
