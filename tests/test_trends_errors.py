"""Trend rules on error counters and remapped rows: corrected ECC and PCIe replays rising,
remapped rows nearing a bank's limit, accumulating, or left pending."""

from __future__ import annotations

from gputui.core.model import Level
from gputui.core.trends import Finding, Remedy, TrendSettings, find_trends
from tests.trend_days import DAY, gpu_day, series, t0


def only(findings: list[Finding], rule: str) -> Finding:
    hits = [f for f in findings if f.rule == rule]
    assert len(hits) == 1, [f.rule for f in findings]
    return hits[0]


def figure(f: Finding, name: str) -> float:
    return next(x.value for x in f.evidence.figures if x.name == name)


# -- corrected ECC ------------------------------------------------------------------------


def test_steady_healthy_gpu_raises_nothing() -> None:
    assert find_trends(series(range(30))) == []


def test_corrected_ecc_above_the_daily_rate_is_found_with_its_series() -> None:
    days = series(range(14), ecc=lambda d: 0 if d < 7 else 30)
    f = only(find_trends(days), "ecc_corrected_rising")
    assert f.level is Level.WARN
    assert f.remedy is Remedy.HARDWARE
    assert "RMA" in f.advice
    assert figure(f, "rate") == 30
    assert "30/day over 7 days" in f.evidence.text
    # The chart holds both weeks: the rise is visible in it.
    assert [p.value for p in f.evidence.series] == [0.0] * 7 + [30.0] * 7
    assert f.evidence.series[0].day == t0()


def test_a_steady_rate_just_under_the_limit_is_not_found() -> None:
    limit = TrendSettings().ecc_corrected_per_day
    assert find_trends(series(range(14), ecc=int(limit) - 1)) == []
    assert find_trends(series(range(14), ecc=int(limit))) != []


def test_ten_times_the_rate_is_critical() -> None:
    days = series(range(7), ecc=150)
    assert only(find_trends(days), "ecc_corrected_rising").level is Level.CRITICAL


def test_corrected_ecc_doubling_week_on_week_below_the_rate() -> None:
    days = series(range(14), ecc=lambda d: 2 if d < 7 else 5)  # 14 then 35, rate 5 < 10
    f = only(find_trends(days), "ecc_corrected_rising")
    assert "5/day against 2/day the week before" in f.evidence.text
    assert figure(f, "rate_week_before") == 2


def test_a_doubling_of_a_few_errors_means_nothing() -> None:
    days = series(range(14), ecc=lambda d: int(d in (3,)) if d < 7 else int(d in (9, 11)))
    assert find_trends(days) == []


def test_uncorrectable_errors_beside_rising_corrected_ones_make_it_critical() -> None:
    days = series(range(7), ecc=20, ecc_uncorrected=lambda d: int(d == 5))
    f = only(find_trends(days), "ecc_corrected_rising")
    assert f.level is Level.CRITICAL
    assert "1 uncorrectable" in f.evidence.text


def test_the_drivers_high_sbe_rate_xid_raises_it_alone() -> None:
    days = series(range(7), ecc=1, xids=lambda d: {92: 1} if d == 6 else {})
    f = only(find_trends(days), "ecc_corrected_rising")
    assert "XID 92" in f.evidence.text


def test_missing_days_neither_add_nor_dilute_the_rate() -> None:
    # 4 days read at 15/day, 3 days missing: 15/day, not 60/7
    days = series([0, 2, 4, 6], ecc=15)
    f = only(find_trends(days, end=t0() + 7 * DAY), "ecc_corrected_rising")
    assert figure(f, "rate") == 15
    assert figure(f, "days") == 4
    # 3 days read are too few to judge (counter_min_days = 4)
    assert find_trends(series([0, 3, 6], ecc=15), end=t0() + 7 * DAY) == []


def test_a_counter_not_read_is_not_judged() -> None:
    assert find_trends(series(range(14), ecc=None, replay=None)) == []


# -- PCIe replays ---------------------------------------------------------------------------


def test_pcie_replays_rising_is_its_own_rule() -> None:
    days = series(range(14), replay=lambda d: 10 if d < 7 else 60)
    f = only(find_trends(days), "pcie_replay_rising")
    assert f.remedy is Remedy.HARDWARE
    assert "reseat" in f.advice
    assert not [x for x in find_trends(days) if x.rule == "ecc_corrected_rising"]


def test_pcie_replays_doubling() -> None:
    days = series(range(14), replay=lambda d: 4 if d < 7 else 9)  # 28 then 63 >= 50
    assert only(find_trends(days), "pcie_replay_rising").level is Level.WARN


# -- remapped rows --------------------------------------------------------------------------


def test_uncorrectable_remaps_near_a_bank_of_eight() -> None:
    warn = only(find_trends(series(range(3), remap_uncorrected=4)), "remap_bank_limit")
    assert warn.level is Level.WARN
    assert "4/8 full" in warn.evidence.text
    crit = only(find_trends(series(range(3), remap_uncorrected=8)), "remap_bank_limit")
    assert crit.level is Level.CRITICAL
    assert find_trends(series(range(3), remap_uncorrected=3)) == []


def test_half_the_gpus_512_remaps_is_critical_even_with_a_higher_bank_setting() -> None:
    s = TrendSettings(remap_uncorrected_warn=400, remap_uncorrected_critical=500)
    f = only(find_trends(series(range(3), remap_uncorrected=256), s), "remap_bank_limit")
    assert f.level is Level.CRITICAL


def test_correctable_remaps_do_not_count_towards_the_bank_limit() -> None:
    # they are replaced when a bank's reserve runs out; only the growth rule sees them
    assert find_trends(series(range(10), remap_corrected=6)) == []


def test_a_failed_remap_is_an_rma() -> None:
    days = series(range(3), remap_uncorrected=9, failure=lambda d: d == 2)
    f = only(find_trends(days), "remap_failure")
    assert f.level is Level.FAILED
    assert "RMA" in f.advice
    # the failure supersedes the nearing-the-limit finding
    assert not [x for x in find_trends(days) if x.rule == "remap_bank_limit"]


def test_rows_accumulating_over_the_window() -> None:
    days = series(range(14), remap_corrected=lambda d: 1 + max(0, d - 9))  # 1 -> 5
    f = only(find_trends(days), "remap_rows_accumulating")
    assert figure(f, "new_rows") == 4
    assert [p.value for p in f.evidence.series][-1] == 5


def test_growth_is_counted_from_the_last_reading_before_the_window() -> None:
    # 1 row long ago, 2 rows from day 8 on: one new row within the last 7 days, and it is
    # counted from day 0's reading (the days in between missing)
    days = [gpu_day(0, remap_corrected=1), *series(range(8, 14), remap_corrected=2)]
    assert find_trends(days) == []
    days = [gpu_day(0, remap_corrected=1), *series(range(8, 14), remap_corrected=3)]
    assert figure(only(find_trends(days), "remap_rows_accumulating"), "new_rows") == 2


def test_a_remap_pending_for_days_wants_a_reset() -> None:
    days = series(range(6), remap_corrected=1, pending=lambda d: d >= 3)
    f = only(find_trends(days), "remap_pending")
    assert figure(f, "pending_days") == 3
    assert "reset" in f.advice


def test_a_pending_remap_cleared_by_a_reset_is_not_found() -> None:
    # pending on days 2-3, applied by a reset before day 4, pending again on day 5 only
    days = series(range(6), remap_corrected=1, pending=lambda d: d in (2, 3, 5))
    assert find_trends(days) == []


def test_a_day_without_the_pending_reading_does_not_break_the_run() -> None:
    days = series(range(4), pending=lambda d: None if d == 2 else d >= 1)
    assert figure(only(find_trends(days), "remap_pending"), "pending_days") == 3
