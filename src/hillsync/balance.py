"""Hill balance: classified runs + goal -> BalanceReport, and the messages it causes.

Pure: no I/O, imports only hillsync.model.

Decisions where DESIGN.md is silent:

- Only runs with a known label count for the shares *and* for the minimum of 4 runs and
  20 km: a runner whose window is mostly treadmill runs cannot be judged on terrain.
  `runs` and `distance_m` of the report still count every run of the window.
- `downhill_high` takes precedence over `low`/`high`: it is the one state about injury risk,
  and cutting descents usually also lowers the hill share, so one message at a time is
  clearer than two.
- Hysteresis: a state is entered as soon as the share leaves the band, and held until the
  share is back inside the band by `HYSTERESIS` (2 percentage points).
- Taper: from 10 days before `race_date` up to the race day itself, `low` is neither entered
  nor held (a low share while tapering is expected); the status is then `ok` and no
  "back in balance" message is sent for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from hillsync.model import (
    BalanceReport,
    BalanceStatus,
    CourseTargets,
    DownhillWeek,
    Goal,
    HillSessions,
    Message,
    RunForBalance,
    Terrain,
    TerrainVolume,
    iso_utc,
)

#: Fewer known-label runs than this in the window gives insufficient_data.
MIN_RUNS = 4
#: Less known-label distance than this (metres) in the window gives insufficient_data.
MIN_DISTANCE_M = 20_000.0
#: How far back inside the band (as a fraction) a share must come to leave a state.
HYSTERESIS = 0.02
#: Days before race_date during which `low` is not raised.
TAPER_DAYS = 10
#: A week whose descent exceeds the previous 4 weeks' average by more than this share ...
RAMP_SHARE = 0.30
#: ... and by at least this much (a few metres more on a tiny base is no load) is a ramp.
RAMP_MIN_M = 150.0
RAMP_WEEKS = 4
#: Above this share of GPS-only elevation, the messages say the figures rest mostly on it.
GPS_ONLY_WARN = 0.5
#: How far back `evaluate` looks beyond the window: for the last hill session's date and
#: the downhill ramp's previous four weeks. Callers pass runs from `history_start` on.
HISTORY_DAYS = 56

WARNING_STATES: frozenset[BalanceStatus] = frozenset(
    {
        BalanceStatus.LOW,
        BalanceStatus.HIGH,
        BalanceStatus.DOWNHILL_HIGH,
        BalanceStatus.DOWNHILL_LOW,
    }
)

ADVICE_LOW = (
    "Add one hill session a week: 6-10 repeats of 100-200 m uphill at hard effort after a "
    "thorough warm-up, jogging down to recover; or move an easy run to a hilly route."
)
ADVICE_HIGH = (
    "Flat running is still essential for pace, breathing and endurance (for a marathon above "
    "all): swap one hill run for a flat run."
)
ADVICE_DOWNHILL_HIGH = (
    "Downhill running strains the muscles eccentrically (braking) and raises injury risk: "
    "cut descents, walk the steep ones, and build up downhill running gradually."
)
ADVICE_DOWNHILL_LOW = (
    "Too little downhill running before a descending race raises the risk of muscle damage "
    "on race day; prior exposure protects (the repeated-bout effect). Add some downhill "
    "running every week, on gentle slopes first, and build it up gradually: at most about "
    "30 % more descent than your recent weekly average."
)
ADVICE_SESSIONS = (
    "Your runs are mostly labelled flat, but your weekly hill-repeat sessions are the hill "
    "work the band asks for: keep them up."
)
ADVICE_OK = "Your hill running is in balance with your goal: keep it up."
ADVICE_TAPER = (
    "Tapering for your race: a hill share below the band is expected now, no extra hills needed."
)


def history_start(goal: Goal, at: datetime) -> datetime:
    """From when `evaluate` wants the athlete's runs: the window or HISTORY_DAYS, the longer."""
    return at - timedelta(days=max(goal.window_days, HISTORY_DAYS))


def downhill_terrain_share(report: BalanceReport) -> float | None:
    """Share of the window's segment-split distance on downhill 100 m segments (None: none)."""
    return _downhill_share(report.terrain)


def downhill_low(
    share: float | None, goal: Goal, previous: BalanceStatus | None, taper: bool
) -> bool:
    """True when the downhill terrain share is under the goal's minimum (with hysteresis).

    Entered below downhill_share_min, held until HYSTERESIS above it; never in the taper
    (too late to prepare) and never without a minimum or a segment split. Raises nothing.
    """
    if taper or share is None or goal.downhill_share_min is None:
        return False
    limit = goal.downhill_share_min
    if previous is BalanceStatus.DOWNHILL_LOW:
        limit += HYSTERESIS
    return share < limit


def downhill_week(runs: Sequence[RunForBalance], at: datetime) -> DownhillWeek:
    """The descent of the ISO week (UTC) holding `at`, up to `at`, against the 4 weeks before.

    It is a ramp when it exceeds their average by more than RAMP_SHARE (30 %) and by at least
    RAMP_MIN_M: "build up downhill running gradually". With no run at all in the weeks before,
    hillsync does not know the base (a new install, a folder of recent files), so nothing is
    called a ramp. Raises ValueError for a naive `at`.
    """
    _check_aware(at)
    day = at.astimezone(UTC).date()
    monday = day - timedelta(days=day.weekday())
    weeks = [0.0] * (RAMP_WEEKS + 1)  # index 0: this week, 1..4: the weeks before
    runs_before = 0
    for run in runs:
        if run.start_time > at or run.elevation_loss_m is None:
            continue
        d = run.start_time.astimezone(UTC).date()
        back = (monday - (d - timedelta(days=d.weekday()))).days // 7
        if 0 <= back <= RAMP_WEEKS:
            weeks[back] += run.elevation_loss_m
            runs_before += back > 0
    average = sum(weeks[1:]) / RAMP_WEEKS
    this = weeks[0]
    ramp = runs_before > 0 and this > (1 + RAMP_SHARE) * average and this - average >= RAMP_MIN_M
    return DownhillWeek(week_start=monday, loss_m=this, average_m=average, ramp=ramp)


def ramp_message(report: BalanceReport) -> Message | None:
    """The downhill ramp warning for the report's week, or None when there is no ramp."""
    week = report.downhill_week
    if week is None or not week.ramp:
        return None
    who = f" ({report.athlete})" if report.athlete != "me" else ""
    rise = (
        f"{(week.loss_m / week.average_m - 1) * 100:.0f} % more than"
        if week.average_m > 0
        else "up from nothing in"
    )
    return Message(
        kind="downhill_ramp",
        title=f"Downhill ramp{who}: {week.loss_m:.0f} m of descent this week",
        body=(
            f"This week (from {week.week_start:%Y-%m-%d}) you ran {week.loss_m:.0f} m "
            f"downhill, {rise} your average of {week.average_m:.0f} m a week over the 4 "
            f"weeks before. Downhill running strains the muscles eccentrically (braking): "
            f"build it up gradually, at most about {RAMP_SHARE:.0%} more a week, and give "
            f"your legs easy days after long descents."
        ),
        athlete=report.athlete,
    )


def _local_week(moment: datetime, tz: tzinfo | None) -> date:
    """The Monday of the week holding `moment` in `tz` (None: the system's local time)."""
    day = moment.astimezone(tz).date()
    return day - timedelta(days=day.weekday())


def digest_moment(now: datetime, weekday: int, at: time, tz: tzinfo | None = None) -> datetime:
    """This week's digest moment (local `weekday` and `at`) as an aware datetime.

    Raises ValueError for a naive `now`.
    """
    _check_aware(now)
    monday = _local_week(now, tz)
    local = datetime.combine(monday + timedelta(days=weekday), at)
    zone = tz if tz is not None else now.astimezone().tzinfo
    return local.replace(tzinfo=zone)


def digest_due(now: datetime, weekday: int, at: time, tz: tzinfo | None = None) -> str | None:
    """The period ("2026-W49", local ISO week) whose digest is due at `now`, or None.

    A week's digest is due from its moment to the week's end: a service that was down at
    the moment sends it when it is back, later in the same week. Raises ValueError for a
    naive `now`.
    """
    if now < digest_moment(now, weekday, at, tz):
        return None
    iso = _local_week(now, tz).isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


def next_digest(now: datetime, weekday: int, at: time, tz: tzinfo | None = None) -> datetime:
    """The next digest moment after `now` (this week's or next week's)."""
    moment = digest_moment(now, weekday, at, tz)
    if moment > now:
        return moment
    return digest_moment(now + timedelta(days=7), weekday, at, tz)


def digest_message(
    runs: Sequence[RunForBalance],
    report: BalanceReport,
    *,
    now: datetime,
    tz: tzinfo | None = None,
    chart: bytes | None = None,
) -> Message:
    """The weekly digest: last week's (local Monday to Sunday) km, hill share, hill sessions
    and vertical, and the window's status against the goal; `chart` (a PNG) attached.

    Raises ValueError for a naive `now`.
    """
    _check_aware(now)
    last_monday = _local_week(now, tz) - timedelta(days=7)
    week = [r for r in runs if _local_week(r.start_time, tz) == last_monday]
    km = sum(r.distance_m for r in week)
    known = sum(r.distance_m for r in week if r.label is not Terrain.UNKNOWN)
    uphill = sum(r.distance_m for r in week if r.label is Terrain.UPHILL)
    sessions = sum(1 for r in week if r.hill_repeats is not None)
    vertical = sum(r.elevation_gain_m or 0.0 for r in week)
    share = _pct(uphill / known) if known > 0 else "n/a"
    iso = last_monday.isocalendar()
    label = f"{iso.year}-W{iso.week:02d}"
    who = f" ({report.athlete})" if report.athlete != "me" else ""
    goal = report.goal
    lines = [
        f"Last week ({label}, from {last_monday:%Y-%m-%d}): {len(week)} runs, {_km(km)}, "
        f"hill share {share}, {sessions} hill-repeat session{'s' if sessions != 1 else ''}, "
        f"{vertical:.0f} m up.",
        f"Last {goal.window_days} days: {str(report.status).replace('_', ' ')} "
        f"(hill share {_pct(report.hill_share) if report.hill_share is not None else 'n/a'}, "
        f"goal {_band(goal)}; {report.runs} runs, {_km(report.distance_m)}).",
    ]
    extra = course_line(report)
    if extra is not None:
        lines.append(extra)
    trust = trust_line(report)
    if trust is not None:
        lines.append(trust)
    lines.append(report.advice)
    return Message(
        kind="digest",
        title=f"hillsync weekly{who}: {label}, {_km(km)}, hill share {share}",
        body="\n".join(lines),
        athlete=report.athlete,
        attachment=chart,
        attachment_name=f"hillsync-{label}.png" if chart is not None else None,
    )


def weekly_sessions(sessions: int, window_days: int) -> bool:
    """True when the window holds on average one hill-repeat session a week (at least one)."""
    return sessions >= max(1, window_days // 7)


def _check_aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("balance needs a timezone-aware datetime")


def in_taper(goal: Goal, at: datetime) -> bool:
    """True from TAPER_DAYS before the goal's race_date up to the race day itself.

    Raises ValueError for a naive `at`.
    """
    _check_aware(at)
    if goal.race_date is None:
        return False
    days_left = (goal.race_date - at.date()).days
    return 0 <= days_left <= TAPER_DAYS


def hill_share_status(
    hill_share: float,
    downhill_share: float,
    goal: Goal,
    *,
    previous: BalanceStatus | None = None,
    taper: bool = False,
) -> BalanceStatus:
    """The status for known shares, with hysteresis against the previous status.

    A state is entered when its share leaves the band and held while it is not back inside
    by HYSTERESIS. downhill_high wins over low/high. Raises nothing.
    """
    if downhill_share > goal.downhill_share_max or (
        previous is BalanceStatus.DOWNHILL_HIGH
        and downhill_share > goal.downhill_share_max - HYSTERESIS
    ):
        return BalanceStatus.DOWNHILL_HIGH
    if hill_share > goal.hill_share_max or (
        previous is BalanceStatus.HIGH and hill_share > goal.hill_share_max - HYSTERESIS
    ):
        return BalanceStatus.HIGH
    if not taper and (
        hill_share < goal.hill_share_min
        or (previous is BalanceStatus.LOW and hill_share < goal.hill_share_min + HYSTERESIS)
    ):
        return BalanceStatus.LOW
    return BalanceStatus.OK


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def _km(metres: float) -> str:
    return f"{metres / 1000:.1f} km"


def _band(goal: Goal) -> str:
    return f"{goal.hill_share_min * 100:.0f}-{goal.hill_share_max * 100:.0f}%"


def _insufficient_advice(known_runs: int, known_m: float, window_days: int) -> str:
    need_runs = max(0, MIN_RUNS - known_runs)
    need_km = max(0.0, MIN_DISTANCE_M - known_m) / 1000
    missing = []
    if need_runs:
        missing.append(f"{need_runs} more run{'s' if need_runs != 1 else ''}")
    if need_km > 0:
        missing.append(f"{need_km:.1f} km more")
    return (
        f"Not enough data: the balance needs at least {MIN_RUNS} runs and "
        f"{MIN_DISTANCE_M / 1000:.0f} km with known terrain in the last {window_days} days "
        f"(you have {known_runs} runs, {known_m / 1000:.1f} km): {' and '.join(missing)}."
    )


def _last_session(sessions: HillSessions, at: datetime) -> str:
    if sessions.last is None:
        return f"No hill-repeat session in the last {HISTORY_DAYS} days."
    days = (at - sessions.last).days
    ago = "today" if days == 0 else "yesterday" if days == 1 else f"{days} days ago"
    return f"Your last hill-repeat session was on {sessions.last:%Y-%m-%d} ({ago})."


def _advice(
    status: BalanceStatus,
    taper: bool,
    hill_share: float | None,
    goal: Goal,
    sessions: HillSessions | None = None,
    at: datetime | None = None,
) -> str:
    if status is BalanceStatus.LOW:
        if sessions is not None and at is not None:
            return f"{ADVICE_LOW} {_last_session(sessions, at)}"
        return ADVICE_LOW
    if status is BalanceStatus.HIGH:
        return ADVICE_HIGH
    if status is BalanceStatus.DOWNHILL_HIGH:
        return ADVICE_DOWNHILL_HIGH
    if status is BalanceStatus.DOWNHILL_LOW:
        return ADVICE_DOWNHILL_LOW
    if taper and hill_share is not None and hill_share < goal.hill_share_min:
        return ADVICE_TAPER
    return ADVICE_OK


def evaluate(
    runs: Sequence[RunForBalance],
    goal: Goal,
    *,
    athlete: str,
    at: datetime,
    previous: BalanceStatus | None = None,
    course: CourseTargets | None = None,
) -> BalanceReport:
    """The hill balance over the window (at - goal.window_days, at].

    `previous` is the last status stored for the athlete (for hysteresis); None or
    insufficient_data means there is none. `course` (hillsync.course.targets) replaces the
    goal's band and downhill minimum by the course's. Runs before the window count only for
    the date of the last hill session. Raises ValueError for a naive `at` or a naive run
    start time.
    """
    _check_aware(at)
    if course is not None:
        goal = replace(
            goal,
            hill_share_min=course.hill_share_min,
            hill_share_max=course.hill_share_max,
            downhill_share_min=course.downhill_share_min,
        )
    start = at - timedelta(days=goal.window_days)
    by_label: dict[Terrain, float] = {t: 0.0 for t in Terrain}
    count = 0
    known_runs = 0
    vertical = 0.0
    in_window: list[RunForBalance] = []
    for run in runs:
        _check_aware(run.start_time)
        if not start < run.start_time <= at:
            continue
        in_window.append(run)
        count += 1
        by_label[run.label] += run.distance_m
        if run.label is not Terrain.UNKNOWN:
            known_runs += 1
        if run.elevation_gain_m is not None:
            vertical += run.elevation_gain_m
    sessions = HillSessions(
        count=sum(1 for r in in_window if r.hill_repeats is not None),
        last=max(
            (r.start_time for r in runs if r.hill_repeats is not None and r.start_time <= at),
            default=None,
        ),
    )
    terrain = terrain_volume(in_window)
    week_start = at - timedelta(days=7)
    vertical_week = sum(r.elevation_gain_m or 0.0 for r in in_window if r.start_time > week_start)
    known_m = sum(m for t, m in by_label.items() if t is not Terrain.UNKNOWN)
    total_m = known_m + by_label[Terrain.UNKNOWN]

    hill_share = by_label[Terrain.UPHILL] / known_m if known_m > 0 else None
    downhill_share = by_label[Terrain.DOWNHILL] / known_m if known_m > 0 else None
    taper = in_taper(goal, at)

    if (
        known_runs < MIN_RUNS
        or known_m < MIN_DISTANCE_M
        or hill_share is None
        or downhill_share is None
    ):
        status = BalanceStatus.INSUFFICIENT_DATA
        advice = _insufficient_advice(known_runs, known_m, goal.window_days)
    else:
        prev = None if previous is BalanceStatus.INSUFFICIENT_DATA else previous
        status = hill_share_status(hill_share, downhill_share, goal, previous=prev, taper=taper)
        advice = _advice(status, taper, hill_share, goal, sessions, at)
        if status is BalanceStatus.LOW and weekly_sessions(sessions.count, goal.window_days):
            # Hill repeats inside flat-labelled runs are the hill work `low` asks for.
            status, advice = BalanceStatus.OK, ADVICE_SESSIONS
        if status is BalanceStatus.OK and downhill_low(_downhill_share(terrain), goal, prev, taper):
            status, advice = BalanceStatus.DOWNHILL_LOW, ADVICE_DOWNHILL_LOW

    return BalanceReport(
        athlete=athlete,
        window_start=start,
        window_end=at,
        runs=count,
        distance_m=total_m,
        by_label=by_label,
        hill_share=hill_share,
        downhill_share=downhill_share,
        vertical_m=vertical,
        goal=goal,
        status=status,
        advice=advice,
        terrain=terrain,
        hill_sessions=sessions,
        course=course,
        vertical_week_m=vertical_week,
        downhill_week=downhill_week(runs, at),
        gps_only_share=_gps_only_share(in_window),
    )


def _gps_only_share(runs: Sequence[RunForBalance]) -> float | None:
    known = [r for r in runs if r.label is not Terrain.UNKNOWN]
    total = sum(r.distance_m for r in known)
    if total <= 0:
        return None
    return sum(r.distance_m for r in known if r.elevation_source == "profile") / total


def trust_line(report: BalanceReport) -> str | None:
    """A warning that the figures rest mostly on GPS-only elevation, or None."""
    share = report.gps_only_share
    if share is None or share <= GPS_ONLY_WARN:
        return None
    return (
        f"{_pct(share)} of this distance has GPS-only elevation (no barometer, no corrected "
        "totals), which is noisy: the shares and the vertical may be off."
    )


def _downhill_share(t: TerrainVolume) -> float | None:
    total = t.uphill_m + t.downhill_m + t.flat_m
    return t.downhill_m / total if total > 0 else None


def terrain_volume(runs: Sequence[RunForBalance]) -> TerrainVolume:
    """The terrain volume of these runs (all of them: the caller picks the window).

    Segment metres add up each run's 100 m segment split (runs without a profile have none);
    gain and loss add up the runs' totals; km-effort is ITRA's: km + D+ / 100, over every
    run's distance. Raises nothing.
    """
    up = down = flat = gain = loss = dist = 0.0
    for run in runs:
        up += run.uphill_m
        down += run.downhill_m
        flat += run.flat_m
        gain += run.elevation_gain_m or 0.0
        loss += run.elevation_loss_m or 0.0
        dist += run.distance_m
    return TerrainVolume(
        uphill_m=up,
        downhill_m=down,
        flat_m=flat,
        gain_m=gain,
        loss_m=loss,
        km_effort=km_effort(dist, gain),
    )


def _round(x: float | None, digits: int) -> float | None:
    return round(x, digits) if x is not None else None


def _downhill_week_json(week: DownhillWeek | None) -> dict[str, Any] | None:
    if week is None:
        return None
    return {
        "week_start": week.week_start.isoformat(),
        "loss_m": round(week.loss_m, 1),
        "average_m": round(week.average_m, 1),
        "ramp": week.ramp,
    }


def course_json(report: BalanceReport) -> dict[str, Any] | None:
    """The race course's figures and targets for `balance --json` (None without a course)."""
    c = report.course
    if c is None:
        return None
    f = c.figures
    km = f.distance_m / 1000 if f.distance_m > 0 else 1.0
    return {
        "name": f.name,
        "distance_m": round(f.distance_m, 1),
        "gain_m": round(f.gain_m, 1),
        "loss_m": round(f.loss_m, 1),
        "gain_m_per_km": round(f.gain_m / km, 1),
        "loss_m_per_km": round(f.loss_m / km, 1),
        "uphill_share": round(c.uphill_share, 4),
        "downhill_share": round(c.downhill_share, 4),
        "flat_share": round(f.flat_m / f.distance_m, 4) if f.distance_m > 0 else None,
        "longest_climb_m": round(f.longest_climb_m, 1),
        "longest_climb_length_m": round(f.longest_climb_length_m, 0),
        "longest_descent_m": round(f.longest_descent_m, 1),
        "longest_descent_length_m": round(f.longest_descent_length_m, 0),
        "descending": c.descending,
        "targets": {
            "hill_share_min": round(c.hill_share_min, 4),
            "hill_share_max": round(c.hill_share_max, 4),
            "downhill_share_min": _round(c.downhill_share_min, 4),
            "vertical_week_m": round(c.vertical_week_target_m, 0),
        },
        "from_course": list(c.from_course),
        "vertical_week_m": round(report.vertical_week_m, 1),
    }


def terrain_lines(report: BalanceReport) -> list[str]:
    """The terrain volume for the human `balance` output, one figure per line."""
    t = report.terrain
    return [
        f"  terrain        {t.uphill_m / 1000:.1f} km uphill, {t.downhill_m / 1000:.1f} km "
        f"downhill, {t.flat_m / 1000:.1f} km flat (100 m segments)",
        f"  vertical       {t.gain_m:.0f} m up, {t.loss_m:.0f} m down; "
        f"km-effort {t.km_effort:.1f} (ITRA: km + D+/100)",
        f"  hill sessions  {report.hill_sessions.count} in the window; "
        + _last_session(report.hill_sessions, report.window_end),
        *([f"  course         {line}"] if (line := course_line(report)) else []),
        *([f"  elevation      {trust}"] if (trust := trust_line(report)) else []),
    ]


def km_effort(distance_m: float, gain_m: float) -> float:
    """ITRA's kilometre-effort: distance in km plus elevation gain in metres divided by 100."""
    return distance_m / 1000.0 + gain_m / 100.0


def _figures(report: BalanceReport) -> str:
    """One sentence with the share in %, the band in % and the window's km."""
    goal = report.goal
    hill = _pct(report.hill_share) if report.hill_share is not None else "n/a"
    down = _pct(report.downhill_share) if report.downhill_share is not None else "n/a"
    return (
        f"Over the last {goal.window_days} days ({report.runs} runs, "
        f"{_km(report.distance_m)}), {hill} of your running was uphill runs and {down} "
        f"downhill runs. Your {goal.profile.value} goal band is {_band(goal)} uphill, "
        f"at most {_pct(goal.downhill_share_max)} downhill."
    )


def _title(report: BalanceReport) -> str:
    goal = report.goal
    who = f" ({report.athlete})" if report.athlete != "me" else ""
    if report.status is BalanceStatus.LOW and report.hill_share is not None:
        return f"Hill share low{who}: {_pct(report.hill_share)}, goal {_band(goal)}"
    if report.status is BalanceStatus.HIGH and report.hill_share is not None:
        return f"Hill share high{who}: {_pct(report.hill_share)}, goal {_band(goal)}"
    if report.status is BalanceStatus.DOWNHILL_HIGH and report.downhill_share is not None:
        return (
            f"Downhill share high{who}: {_pct(report.downhill_share)}, "
            f"max {_pct(goal.downhill_share_max)}"
        )
    down_terrain = downhill_terrain_share(report)
    if (
        report.status is BalanceStatus.DOWNHILL_LOW
        and down_terrain is not None
        and goal.downhill_share_min is not None
    ):
        return (
            f"Downhill preparation low{who}: {_pct(down_terrain)} of your running on descents, "
            f"minimum {_pct(goal.downhill_share_min)}"
        )
    hill = _pct(report.hill_share) if report.hill_share is not None else "n/a"
    return f"Back in balance{who}: hill share {hill}, goal {_band(goal)}"


def course_line(report: BalanceReport) -> str | None:
    """One sentence on the race course's targets, or None without a course."""
    c = report.course
    if c is None:
        return None
    f = c.figures
    parts = [
        f"Your race course {f.name}: {_km(f.distance_m)}, {f.gain_m:.0f} m up, "
        f"{f.loss_m:.0f} m down, {_pct(c.uphill_share)} of it climbing."
    ]
    parts.append(
        f"This week you climbed {report.vertical_week_m:.0f} m of the "
        f"{c.vertical_week_target_m:.0f} m a week it asks for now."
    )
    down = downhill_terrain_share(report)
    if c.downhill_share_min is not None and down is not None:
        parts.append(
            f"{_pct(down)} of your running was on descents (minimum {_pct(c.downhill_share_min)})."
        )
    return " ".join(parts)


def _message(kind: str, title: str, report: BalanceReport) -> Message:
    lines = [_figures(report), report.advice]
    trust = trust_line(report)
    if trust is not None:
        lines.insert(1, trust)
    extra = course_line(report)
    if extra is not None:
        lines.insert(1, extra)
    body = "\n".join(lines)
    return Message(kind=kind, title=title, body=body, athlete=report.athlete)


def warning_message(report: BalanceReport, previous: BalanceStatus | None) -> Message | None:
    """The message for a change of status, or None when there is nothing to say.

    Entering low/high/downhill_high gives a warning; returning to ok from one of them gives
    "back in balance" (except when ok only because the taper silences `low`).
    insufficient_data never gives a message. Raises nothing.
    """
    status = report.status
    if status is previous or status is BalanceStatus.INSUFFICIENT_DATA:
        return None
    if status in WARNING_STATES:
        return _message(f"balance_{status.value}", _title(report), report)
    if status is BalanceStatus.OK and previous in WARNING_STATES:
        if (
            previous is BalanceStatus.LOW
            and report.hill_share is not None
            and report.hill_share < report.goal.hill_share_min
            and in_taper(report.goal, report.window_end)
        ):
            return None  # silenced by the taper, not back in balance
        if previous is BalanceStatus.DOWNHILL_LOW and in_taper(report.goal, report.window_end):
            return None  # too late to prepare: silenced, not back in balance
        return _message("balance_ok", _title(report), report)
    return None


def reminder_message(report: BalanceReport) -> Message:
    """A reminder that a warning state still holds (sent every remind_days). Raises nothing."""
    return _message(f"reminder_{report.status.value}", f"Reminder: {_title(report)}", report)


def needs_auth_message(source: str, command: str, athlete: str) -> Message:
    """The message that an account must be reconnected, with the command that does it."""
    who = f" of athlete {athlete}" if athlete != "me" else ""
    return Message(
        kind="needs_auth",
        title=f"hillsync: {source} needs reconnecting",
        body=(
            f"The {source} account{who} no longer accepts hillsync's tokens, so its runs are "
            f"not synced. Reconnect it with: {command}"
        ),
        athlete=athlete,
    )


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(float(value), digits)


def report_as_json(report: BalanceReport) -> dict[str, Any]:
    """The report in the `balance --json` shape of DESIGN.md section 2 (JSON-serialisable).

    The one builder of that shape: `hillsync balance --json` prints it, the balance state
    stores it, the web pages read it. Times are ISO 8601 UTC with a `Z`; metres are rounded
    to 0.1 m, shares to 4 digits. Raises nothing.
    """
    by_label: Mapping[Terrain, float] = report.by_label
    goal = report.goal
    return {
        "athlete": report.athlete,
        "window_start": iso_utc(report.window_start),
        "window_end": iso_utc(report.window_end),
        "runs": report.runs,
        "distance_m": _rounded(report.distance_m),
        "by_label": {t.value: _rounded(by_label.get(t, 0.0)) for t in Terrain},
        "hill_share": _rounded(report.hill_share, 4),
        "downhill_share": _rounded(report.downhill_share, 4),
        "vertical_m": _rounded(report.vertical_m),
        "goal": {
            "profile": goal.profile.value,
            "hill_share_min": goal.hill_share_min,
            "hill_share_max": goal.hill_share_max,
            "downhill_share_max": goal.downhill_share_max,
        },
        "status": report.status.value,
        "advice": report.advice,
        **added_json(report),
    }


def added_json(report: BalanceReport) -> dict[str, Any]:
    """The keys added to `balance --json` since the first release (DESIGN.md section 2)."""
    t = report.terrain
    return {
        "terrain_m": {
            "uphill": round(t.uphill_m, 1),
            "downhill": round(t.downhill_m, 1),
            "flat": round(t.flat_m, 1),
        },
        "loss_m": round(t.loss_m, 1),
        "km_effort": round(t.km_effort, 1),
        "downhill_terrain_share": _round(downhill_terrain_share(report), 4),
        "downhill_share_min": report.goal.downhill_share_min,
        "course": course_json(report),
        "gps_only_share": _round(report.gps_only_share, 4),
        "downhill_week": _downhill_week_json(report.downhill_week),
        "hill_sessions": {
            "count": report.hill_sessions.count,
            "last": report.hill_sessions.last.date().isoformat()
            if report.hill_sessions.last
            else None,
        },
    }
