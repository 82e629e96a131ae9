"""The benchmark's yardsticks (tests.bench_emulator): the honest floor the issue defines, and the emulator's
per-request overhead measurement."""

from __future__ import annotations

import pytest

from fixtures import builders as b
from fixtures.generate import generate_estate
from fixtures.tenant import tenant_estate
from tests.bench_emulator import SUBSCRIPTION_LISTS, floor_reads, floor_s, honest_floor_s, measure_overhead


def test_the_floor_of_a_thousand_templates_is_the_issues_31_2_seconds() -> None:
    # 1,000 trigger lists + 10 subscription lists + 20 target galleries' image lists - 250 free, at 25 a second.
    one = generate_estate(1, 1000, seed=7)
    assert floor_reads(one) == {one["subscriptions"][0].lower(): 1000 + len(SUBSCRIPTION_LISTS) + 20}
    assert honest_floor_s(one) == pytest.approx(31.2)
    # Three such subscriptions, each with its own bucket, read in parallel: the same floor, not three times it.
    assert honest_floor_s(generate_estate(3, 1000, seed=7)) == pytest.approx(31.2)


def test_subscriptions_in_parallel_the_slowest_bounds_and_the_burst_is_free() -> None:
    assert floor_s([250, 500, 300]) == pytest.approx(10.0)
    assert floor_s([41] * 300) == 0.0  # 300 x 30 templates: every subscription stays within its burst
    assert floor_s([]) == 0.0


def test_a_target_gallery_is_charged_to_the_subscription_that_holds_it() -> None:
    t = tenant_estate(8, holders=2, templates_per_holder=3)
    reads = floor_reads(t.estate)
    first, second = (h.lower() for h in t.holders)
    # The first holder's first template distributes to the gallery-only subscription's gallery, the rest to their own.
    assert reads[first] == 3 + len(SUBSCRIPTION_LISTS) + 1
    assert reads[second] == 3 + len(SUBSCRIPTION_LISTS) + 1
    assert reads[t.gallery_only.lower()] == 1  # not audited itself, but its gallery's image list is read there


def test_templates_with_no_gallery_target_add_only_their_trigger_list() -> None:
    sub = "11111111-1111-1111-1111-111111111111"
    estate = b.snapshot([sub], {"imageTemplates": [b.template(sub, "rg", f"t{i}", distribute=[]) for i in range(4)]})
    assert floor_reads(estate) == {sub: 4 + len(SUBSCRIPTION_LISTS)}


def test_overhead_is_measured_over_one_keep_alive_connection() -> None:
    row = measure_overhead(requests=5, latency_ms=20)
    assert row.requests == 5 and row.connections == 1
    assert row.mean_ms >= 20 and row.median_ms >= 20  # the configured latency is a lower bound
    with pytest.raises(ValueError):
        measure_overhead(requests=0)
