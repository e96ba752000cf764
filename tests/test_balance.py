"""Balance over synthetic histories, for every goal profile, and the messages it causes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

import design
from hillsync.balance import (
    evaluate,
    hill_share_status,
    in_taper,
    needs_auth_message,
    reminder_message,
    report_as_json,
    warning_message,
)
from hillsync.model import (
    BalanceStatus,
    Goal,
    GoalProfile,
    RunForBalance,
    Terrain,
)

AT = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)
#: DESIGN.md section 5's bands (tests/design.py), by profile: never the code's own table.
GOAL_BANDS = {GoalProfile(name): band for name, band in design.GOAL_BANDS.items()}
PROFILES = list(GOAL_BANDS)


def goal_for(profile: GoalProfile, **kw: object) -> Goal:
    lo, hi, dmax = GOAL_BANDS[profile]
    return Goal(profile, lo, hi, dmax, **kw)  # type: ignore[arg-type]


def history(
    hill: float, down: float, *, total_km: float = 100.0, unknown_km: float = 0.0
) -> list[RunForBalance]:
    """Runs over the last 3 weeks whose known distance splits into the given shares."""
    total = total_km * 1000
    parts = [
        (Terrain.UPHILL, hill * total, 2),
        (Terrain.DOWNHILL, down * total, 1),
        (Terrain.FLAT, (1 - hill - down) * total, 4),
        (Terrain.UNKNOWN, unknown_km * 1000, 1),
    ]
    runs = []
    day = 1
    for label, metres, pieces in parts:
        if metres <= 0:
            continue
        for _ in range(pieces):
            runs.append(
                RunForBalance(AT - timedelta(days=day, hours=1), metres / pieces, label, 50.0)
            )
            day += 1
    return runs


def run_eval(
    runs: Sequence[RunForBalance], goal: Goal, previous: BalanceStatus | None = None
) -> BalanceStatus:
    return evaluate(runs, goal, athlete="me", at=AT, previous=previous).status


def mid(profile: GoalProfile) -> float:
    lo, hi, _ = GOAL_BANDS[profile]
    return (lo + hi) / 2


@pytest.mark.parametrize("profile", PROFILES)
class TestEveryProfile:
    """The five statuses and both sides of the hysteresis, for each goal profile."""

    def test_in_band_is_ok(self, profile: GoalProfile) -> None:
        """A share in the middle of the band with little downhill is ok."""
        dmax = GOAL_BANDS[profile][2]
        assert run_eval(history(mid(profile), dmax / 2), goal_for(profile)) is BalanceStatus.OK

    def test_below_band_is_low(self, profile: GoalProfile) -> None:
        """A share 3 points below the band is low."""
        lo = GOAL_BANDS[profile][0]
        assert run_eval(history(lo - 0.03, 0.0), goal_for(profile)) is BalanceStatus.LOW

    def test_above_band_is_high(self, profile: GoalProfile) -> None:
        """A share 3 points above the band is high."""
        hi = GOAL_BANDS[profile][1]
        assert run_eval(history(hi + 0.03, 0.0), goal_for(profile)) is BalanceStatus.HIGH

    def test_downhill_above_max_is_downhill_high(self, profile: GoalProfile) -> None:
        """A downhill share above the maximum is downhill_high, even with a hill share in band."""
        dmax = GOAL_BANDS[profile][2]
        runs = history(mid(profile), dmax + 0.03)
        assert run_eval(runs, goal_for(profile)) is BalanceStatus.DOWNHILL_HIGH

    def test_few_runs_is_insufficient(self, profile: GoalProfile) -> None:
        """Three runs, however long, are not enough to judge."""
        runs = [RunForBalance(AT - timedelta(days=d), 15_000.0, Terrain.FLAT) for d in (1, 2, 3)]
        assert run_eval(runs, goal_for(profile)) is BalanceStatus.INSUFFICIENT_DATA

    def test_short_distance_is_insufficient(self, profile: GoalProfile) -> None:
        """Four runs totalling 15 km are not enough to judge."""
        runs = [RunForBalance(AT - timedelta(days=d), 3_750.0, Terrain.FLAT) for d in (1, 2, 3, 4)]
        assert run_eval(runs, goal_for(profile)) is BalanceStatus.INSUFFICIENT_DATA

    def test_high_held_just_inside_band(self, profile: GoalProfile) -> None:
        """After high, a share 1 point inside the band is still high; 3 points inside is ok."""
        hi = GOAL_BANDS[profile][1]
        goal = goal_for(profile)
        assert run_eval(history(hi - 0.01, 0.0), goal, BalanceStatus.HIGH) is BalanceStatus.HIGH
        assert run_eval(history(hi - 0.03, 0.0), goal, BalanceStatus.HIGH) is BalanceStatus.OK
        assert run_eval(history(hi - 0.01, 0.0), goal, BalanceStatus.OK) is BalanceStatus.OK

    def test_low_held_just_inside_band(self, profile: GoalProfile) -> None:
        """After low, a share 1 point inside the band is still low; 3 points inside is ok."""
        lo = GOAL_BANDS[profile][0]
        goal = goal_for(profile)
        assert run_eval(history(lo + 0.01, 0.0), goal, BalanceStatus.LOW) is BalanceStatus.LOW
        assert run_eval(history(lo + 0.03, 0.0), goal, BalanceStatus.LOW) is BalanceStatus.OK
        assert run_eval(history(lo + 0.01, 0.0), goal, None) is BalanceStatus.OK

    def test_downhill_high_held_just_below_max(self, profile: GoalProfile) -> None:
        """After downhill_high, a downhill share 1 point below the maximum still holds it."""
        dmax = GOAL_BANDS[profile][2]
        goal = goal_for(profile)
        runs = history(mid(profile), dmax - 0.01)
        assert run_eval(runs, goal, BalanceStatus.DOWNHILL_HIGH) is BalanceStatus.DOWNHILL_HIGH
        assert run_eval(runs, goal, None) is BalanceStatus.OK
        runs = history(mid(profile), dmax - 0.03)
        assert run_eval(runs, goal, BalanceStatus.DOWNHILL_HIGH) is BalanceStatus.OK

    def test_taper_silences_low(self, profile: GoalProfile) -> None:
        """Five days before the race a low share is ok; twenty days before it is low."""
        lo = GOAL_BANDS[profile][0]
        runs = history(lo - 0.05, 0.0)
        near = goal_for(profile, race_date=AT.date() + timedelta(days=5))
        far = goal_for(profile, race_date=AT.date() + timedelta(days=20))
        report = evaluate(runs, near, athlete="me", at=AT, previous=BalanceStatus.LOW)
        assert report.status is BalanceStatus.OK
        assert "Tapering" in report.advice
        assert run_eval(runs, far) is BalanceStatus.LOW

    def test_taper_still_raises_high(self, profile: GoalProfile) -> None:
        """The taper only silences low: a high share is still high before the race."""
        hi = GOAL_BANDS[profile][1]
        near = goal_for(profile, race_date=AT.date() + timedelta(days=3))
        assert run_eval(history(hi + 0.03, 0.0), near) is BalanceStatus.HIGH


class TestShares:
    """What goes into the shares and the window."""

    def test_unknown_runs_excluded_from_share(self) -> None:
        """Treadmill kilometres change neither the hill share nor the downhill share."""
        goal = goal_for(GoalProfile.GENERAL)
        plain = evaluate(history(0.2, 0.1), goal, athlete="me", at=AT)
        with_unknown = evaluate(history(0.2, 0.1, unknown_km=60), goal, athlete="me", at=AT)
        assert with_unknown.hill_share == pytest.approx(0.2)
        assert with_unknown.downhill_share == pytest.approx(0.1)
        assert with_unknown.hill_share == pytest.approx(plain.hill_share)
        assert with_unknown.distance_m == pytest.approx(160_000)
        assert with_unknown.by_label[Terrain.UNKNOWN] == pytest.approx(60_000)

    def test_only_unknown_runs_is_insufficient(self) -> None:
        """A window of treadmill runs only cannot be judged on terrain."""
        runs = [RunForBalance(AT - timedelta(days=d), 10_000.0, Terrain.UNKNOWN) for d in range(6)]
        report = evaluate(runs, goal_for(GoalProfile.GENERAL), athlete="me", at=AT)
        assert report.status is BalanceStatus.INSUFFICIENT_DATA
        assert report.hill_share is None
        assert report.runs == 6

    def test_window_is_half_open(self) -> None:
        """A run exactly window_days before `at` is out, one exactly at `at` is in."""
        goal = goal_for(GoalProfile.GENERAL)
        runs = [
            RunForBalance(AT - timedelta(days=28), 10_000.0, Terrain.UPHILL),
            RunForBalance(AT, 10_000.0, Terrain.FLAT),
            RunForBalance(AT + timedelta(seconds=1), 10_000.0, Terrain.UPHILL),
        ]
        report = evaluate(runs, goal, athlete="me", at=AT)
        assert report.runs == 1
        assert report.window_start == AT - timedelta(days=28)
        assert report.window_end == AT

    def test_vertical_is_total_gain(self) -> None:
        """vertical_m adds the gain of every run in the window, None counting as zero."""
        runs = [
            RunForBalance(AT - timedelta(days=1), 5_000.0, Terrain.UPHILL, 300.0),
            RunForBalance(AT - timedelta(days=2), 5_000.0, Terrain.FLAT, None),
            RunForBalance(AT - timedelta(days=3), 5_000.0, Terrain.FLAT, 20.5),
        ]
        report = evaluate(runs, goal_for(GoalProfile.TRAIL), athlete="me", at=AT)
        assert report.vertical_m == pytest.approx(320.5)

    def test_naive_time_is_refused(self) -> None:
        """A naive evaluation time is a programming error, not silently local time."""
        with pytest.raises(ValueError, match="timezone-aware"):
            evaluate([], goal_for(GoalProfile.GENERAL), athlete="me", at=datetime(2026, 1, 1))  # noqa: DTZ001

    def test_insufficient_advice_says_what_is_missing(self) -> None:
        """The advice of insufficient_data says how many runs and km are still needed."""
        runs = [RunForBalance(AT - timedelta(days=d), 4_000.0, Terrain.FLAT) for d in (1, 2)]
        report = evaluate(runs, goal_for(GoalProfile.GENERAL), athlete="me", at=AT)
        assert "2 more runs" in report.advice
        assert "12.0 km more" in report.advice

    def test_taper_window(self) -> None:
        """The taper covers the 10 days before the race and the race day, not the day after."""
        goal = goal_for(GoalProfile.ROAD_MARATHON, race_date=AT.date())
        assert in_taper(goal, AT)
        assert in_taper(goal, AT - timedelta(days=10))
        assert not in_taper(goal, AT - timedelta(days=11))
        assert not in_taper(goal, AT + timedelta(days=1))

    @pytest.mark.parametrize(
        "profile", [p for p in PROFILES if GOAL_BANDS[p][1] + GOAL_BANDS[p][2] + 0.06 < 1]
    )
    def test_downhill_high_wins_over_high(self, profile: GoalProfile) -> None:
        """With both the hill and the downhill share too high, downhill_high is reported."""
        _, hi, dmax = GOAL_BANDS[profile]
        runs = history(hi + 0.03, dmax + 0.03)
        assert run_eval(runs, goal_for(profile)) is BalanceStatus.DOWNHILL_HIGH

    def test_status_helper_prefers_downhill(self) -> None:
        """hill_share_status reports downhill_high when both limits are crossed."""
        goal = goal_for(GoalProfile.ROAD_MARATHON)
        assert hill_share_status(0.5, 0.3, goal) is BalanceStatus.DOWNHILL_HIGH


class TestMessages:
    """The warnings state the figures and the advice."""

    goal = goal_for(GoalProfile.ROAD_MARATHON)

    def report(self, hill: float, down: float, previous: BalanceStatus | None = None):  # type: ignore[no-untyped-def]
        return evaluate(
            history(hill, down, total_km=80), self.goal, athlete="me", at=AT, previous=previous
        )

    def test_low_message(self) -> None:
        """Entering low states the share, the band, the km and the hill-session advice."""
        report = self.report(0.05, 0.0)
        msg = warning_message(report, BalanceStatus.OK)
        assert msg is not None
        assert msg.kind == "balance_low"
        text = msg.title + msg.body
        assert "5%" in text
        assert "10-25%" in text
        assert "80.0 km" in msg.body
        assert "6-10 repeats of 100-200 m uphill" in msg.body

    def test_high_message(self) -> None:
        """Entering high says flat running matters and to swap one hill run."""
        msg = warning_message(self.report(0.40, 0.0), None)
        assert msg is not None
        assert "40%" in msg.title
        assert "swap one hill run for a flat run" in msg.body
        assert "80.0 km" in msg.body

    def test_downhill_message(self) -> None:
        """Entering downhill_high states the downhill share, its maximum and the injury advice."""
        msg = warning_message(self.report(0.15, 0.20), BalanceStatus.HIGH)
        assert msg is not None
        assert msg.kind == "balance_downhill_high"
        assert "20%" in msg.title
        assert "max 10%" in msg.title
        assert "eccentrically" in msg.body
        assert "walk the steep ones" in msg.body

    def test_back_in_balance(self) -> None:
        """Returning to ok from a warning gives a short "back in balance"."""
        msg = warning_message(self.report(0.15, 0.0), BalanceStatus.HIGH)
        assert msg is not None
        assert msg.kind == "balance_ok"
        assert msg.title.startswith("Back in balance")
        assert "15%" in msg.title

    def test_no_message_without_change(self) -> None:
        """ok after ok, high after high and insufficient data say nothing."""
        assert warning_message(self.report(0.15, 0.0), BalanceStatus.OK) is None
        high = self.report(0.40, 0.0, BalanceStatus.HIGH)
        assert warning_message(high, BalanceStatus.HIGH) is None
        none = evaluate([], self.goal, athlete="me", at=AT)
        assert warning_message(none, BalanceStatus.HIGH) is None
        assert warning_message(self.report(0.15, 0.0), None) is None

    def test_taper_sends_no_back_in_balance(self) -> None:
        """A low share silenced by the taper is not announced as back in balance."""
        goal = goal_for(GoalProfile.ROAD_MARATHON, race_date=AT.date() + timedelta(days=4))
        report = evaluate(history(0.05, 0.0), goal, athlete="me", at=AT, previous=BalanceStatus.LOW)
        assert report.status is BalanceStatus.OK
        assert warning_message(report, BalanceStatus.LOW) is None

    def test_reminder(self) -> None:
        """A reminder repeats the figures of the holding state."""
        msg = reminder_message(self.report(0.40, 0.0))
        assert msg.kind == "reminder_high"
        assert msg.title.startswith("Reminder: Hill share high")
        assert "40%" in msg.body

    def test_other_athlete_named(self) -> None:
        """A message for another athlete than `me` names the athlete."""
        report = evaluate(history(0.40, 0.0), self.goal, athlete="anna", at=AT)
        msg = warning_message(report, None)
        assert msg is not None
        assert msg.athlete == "anna"
        assert "anna" in msg.title

    def test_needs_auth(self) -> None:
        """The needs_auth message names the account and the exact reconnect command."""
        msg = needs_auth_message("anna/strava", "hillsync connect strava --athlete anna", "anna")
        assert msg.kind == "needs_auth"
        assert "anna/strava" in msg.title
        assert msg.body.endswith("hillsync connect strava --athlete anna")

    def test_json_shape(self) -> None:
        """report_as_json has the balance --json keys of the design (added keys included)."""
        doc = report_as_json(self.report(0.2, 0.05))
        assert set(doc) >= {"terrain_m", "loss_m", "km_effort"}
        assert set(doc) >= {
            "athlete",
            "window_start",
            "window_end",
            "runs",
            "distance_m",
            "by_label",
            "hill_share",
            "downhill_share",
            "vertical_m",
            "goal",
            "status",
            "advice",
        }
        assert set(doc["by_label"]) == {"uphill", "downhill", "flat", "unknown"}
        assert doc["goal"]["profile"] == "road-marathon"
        assert doc["status"] == "ok"
        # ISO 8601 UTC with a Z, shares to 4 digits, metres to 0.1 m (DESIGN section 2).
        assert doc["window_end"] == AT.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert doc["hill_share"] == round(doc["hill_share"], 4)
        json.dumps(doc)
