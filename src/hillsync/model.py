"""Plain domain types shared by every layer.

Nothing here does I/O or imports the rest of hillsync. Every datetime is timezone-aware UTC.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # numpy (about 20 MB and 0.1 s) is imported only where arrays are made: `--help`,
    # `status`, `balance` and an idle daemon never need it (a `type` alias is lazy).
    import numpy as np
    import numpy.typing as npt

type FloatArray = npt.NDArray[np.float64]

#: hillsync's own sport names. Sources map their vocabulary onto these.
RUN_SPORTS: tuple[str, ...] = ("run", "trail_run", "track_run", "treadmill", "virtual_run")
#: Sports whose elevation is meaningless (no terrain under the feet).
INDOOR_SPORTS: frozenset[str] = frozenset({"treadmill", "virtual_run"})
#: The sport of a file that does not state one and whose movement cannot be told apart
#: (section 4): never counted as a run.
UNKNOWN_SPORT = "unknown"
#: Other sports a source may report; anything else is "other".
OTHER_SPORTS: tuple[str, ...] = ("ride", "swim", "walk", "hike", "other", UNKNOWN_SPORT)
#: Where a label's gain and loss came from (`elevation_source` in the JSON outputs):
#: the device's own totals, the recorded profile, an API summary, or nothing.
ELEVATION_SOURCES: tuple[str, ...] = ("device", "profile", "summary", "none")

#: Resolution of a stored profile: one altitude every PROFILE_STEP_M metres of distance.
PROFILE_STEP_M = 10.0


class Terrain(enum.StrEnum):
    """The label of a run."""

    UPHILL = "uphill"
    DOWNHILL = "downhill"
    FLAT = "flat"
    UNKNOWN = "unknown"


@dataclass(frozen=True, eq=False)
class Track:
    """Samples as a device or API recorded them, before any cleaning.

    All arrays have the same length. A field the file does not have is None; a sample
    missing inside a field is NaN. `distance_m` is cumulative from the start; `time_s` is
    seconds from the first sample. `segment` numbers the GPX tracks/segments (or FIT laps
    separated by a pause) so that the gap between two segments is not counted as distance.
    """

    altitude_m: FloatArray
    distance_m: FloatArray | None = None
    lat: FloatArray | None = None
    lon: FloatArray | None = None
    time_s: FloatArray | None = None
    speed_mps: FloatArray | None = None
    segment: npt.NDArray[np.int64] | None = None

    def __post_init__(self) -> None:
        # Every consumer indexes the fields together: a 2-D field or one of another length
        # (damaged input) must fail here, where the reader turns it into a clear rejection.
        n = self.altitude_m.shape[0] if self.altitude_m.ndim == 1 else -1
        for name in ("altitude_m", "distance_m", "lat", "lon", "time_s", "speed_mps", "segment"):
            value = getattr(self, name)
            if value is not None and (value.ndim != 1 or value.shape[0] != n):
                raise ValueError(f"track field {name} does not match the altitude samples")

    def __len__(self) -> int:
        return int(self.altitude_m.shape[0])


@dataclass(frozen=True, eq=False)
class Profile:
    """A cleaned elevation profile: altitude every `step_m` metres along the route.

    `altitude_m[i]` is the altitude at distance `i * step_m`; the last sample may be closer
    than `step_m` to the one before, at `distance_m`. A NaN altitude marks distance the
    recording covered without elevation (a gap of the altimeter, a track shorter than the
    activity), so that coverage survives storage. This is what the store keeps, so that
    reclassification needs neither the file nor the API.
    """

    altitude_m: FloatArray
    distance_m: float
    step_m: float = PROFILE_STEP_M

    def distances(self) -> FloatArray:
        """The distance of every sample from the start, in metres."""
        import numpy as np

        n = self.altitude_m.shape[0]
        d = np.arange(n, dtype=np.float64) * self.step_m
        if n:
            d[-1] = self.distance_m
        return d

    def covered_m(self) -> float:
        """Metres of the profile between two samples that both have an altitude."""
        import numpy as np

        z = self.altitude_m
        if z.shape[0] < 2:
            return 0.0
        ok = np.isfinite(z)
        lengths = np.diff(self.distances())
        return float(lengths[ok[1:] & ok[:-1]].sum())


@dataclass(frozen=True)
class Activity:
    """One activity as a source yields it.

    `source_id` is unique within the source. `reported_gain_m` / `reported_loss_m` are the
    device's or API's own totals (barometer or corrected model) when it gives them.
    `raw` is the payload as received (JSON-serialisable), kept so data can be re-derived.
    `external_id` is what the uploader called it (Strava: `garmin_ping_<id>` for a Garmin
    upload). `indoor` is True for treadmill/trainer/virtual activities.
    """

    source: str
    source_id: str
    sport: str
    start_time: datetime
    name: str | None = None
    distance_m: float | None = None
    moving_time_s: float | None = None
    elapsed_time_s: float | None = None
    reported_gain_m: float | None = None
    reported_loss_m: float | None = None
    #: Highest minus lowest altitude, when the API gives them (Strava elev_high - elev_low).
    elevation_range_m: float | None = None
    start_latlng: tuple[float, float] | None = None
    end_latlng: tuple[float, float] | None = None
    indoor: bool = False
    external_id: str | None = None
    track: Track | None = None
    profile: Profile | None = None
    raw: Mapping[str, Any] | None = None
    #: Where the elevation comes from, best first: "file" > "garmin" > "strava".
    elevation_source: str = "file"
    #: The activity's number within a file holding several (TCX `<Activity>` elements),
    #: from 1; None for a file holding one.
    part: int | None = None
    #: Set when the file was damaged and what precedes the damage was kept.
    warning: str | None = None

    @property
    def is_run(self) -> bool:
        """True for the sports hillsync counts as running by default."""
        return self.sport in RUN_SPORTS


class Secret:
    """A secret value (token, password, client secret, notification URL with a key).

    Its repr and str never show the value; `reveal()` does, for the one call that needs it.
    Every secret made is remembered so that the log redaction can mask it wherever it
    turns up (inside a URL, an exception text, a payload).
    """

    _known: set[str] = set()  # noqa: RUF012 - a deliberate process-wide registry

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        if len(value) >= 4:
            Secret._known.add(value)

    def reveal(self) -> str:
        """The secret itself."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    @classmethod
    def known_values(cls) -> frozenset[str]:
        """Every secret value made in this process (for redaction)."""
        return frozenset(cls._known)


@dataclass(frozen=True)
class ClassifyParams:
    """Thresholds of the classifier (config section [classify])."""

    hilly_m_per_km: float = 15.0
    downhill_ratio: float = 1.5
    grade_pct: float = 3.0
    hysteresis_m: float = 3.0


@dataclass(frozen=True)
class Summary:
    """What the classifier needs when there is no profile (or beside it)."""

    sport: str
    distance_m: float | None
    reported_gain_m: float | None = None
    reported_loss_m: float | None = None
    #: Highest minus lowest altitude: bounds the loss of a point-to-point run, since
    #: loss - gain == start altitude - end altitude.
    elevation_range_m: float | None = None
    start_latlng: tuple[float, float] | None = None
    end_latlng: tuple[float, float] | None = None
    indoor: bool = False
    #: Where `reported_gain_m`/`reported_loss_m` come from: "device" (the recording
    #: device's own totals, in the file) or "summary" (an API's activity summary).
    totals_from: str = "device"


@dataclass(frozen=True)
class HillRepeats:
    """A hill-repeat session found in one run: how many efforts, their typical length and grade.

    `length_m` and `grade_pct` are the medians over the efforts.
    """

    count: int
    length_m: float
    grade_pct: float


@dataclass(frozen=True)
class Classification:
    """The label of one run and the figures it was decided from.

    `inputs` records what was used ("profile" or "summary", the thresholds, where gain and
    loss came from) so that the decision can be explained and recomputed.
    """

    label: Terrain
    distance_m: float
    elevation_gain_m: float | None
    elevation_loss_m: float | None
    uphill_m: float
    downhill_m: float
    flat_m: float
    version: int
    inputs: Mapping[str, Any] = field(default_factory=dict)
    #: True when the summary alone could not decide (point-to-point run without loss):
    #: the source should fetch the profile if it can.
    needs_profile: bool = False
    #: The hill-repeat session found in the run's profile (hillsync.hills), if any.
    hill_repeats: HillRepeats | None = None
    #: One line saying why this label ("412 m up over 11.1 km = 37 m/km >= 15: uphill").
    reason: str = ""
    #: Where gain and loss came from: one of ELEVATION_SOURCES.
    elevation_source: str = "none"


class SourceKind(enum.StrEnum):
    """What a source reads from."""

    STRAVA = "strava"
    GARMIN = "garmin"
    FOLDER = "folder"


#: The kinds that are remote accounts (connected with `hillsync connect`).
ACCOUNT_KINDS: tuple[SourceKind, ...] = (SourceKind.STRAVA, SourceKind.GARMIN)


class AccountState(enum.StrEnum):
    """Whether a connected account's tokens still work."""

    CONNECTED = "connected"
    NEEDS_AUTH = "needs_auth"


class SyncStatus(enum.StrEnum):
    """How a source's last sync ended (the `state` of `status --json`)."""

    OK = "ok"
    NEEDS_AUTH = "needs_auth"
    RATE_LIMITED = "rate_limited"
    ERROR = "error"
    NEVER_SYNCED = "never_synced"
    INTERRUPTED = "interrupted"

    @classmethod
    def parse(cls, value: str | None) -> SyncStatus:
        """The status a stored text names; an unknown one (written by another version) is
        `error`, so that it is shown and retried rather than crashing a reader. Raises
        nothing."""
        if value is None:
            return cls.NEVER_SYNCED
        try:
            return cls(value)
        except ValueError:
            return cls.ERROR


#: Sync states that make a sync partial (exit code 3) and show a source as failing.
FAILED_STATES: frozenset[SyncStatus] = frozenset(
    {SyncStatus.NEEDS_AUTH, SyncStatus.RATE_LIMITED, SyncStatus.ERROR}
)


def iso_utc(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z` (the JSON outputs' time format), or None. Raises nothing."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class GoalProfile(enum.StrEnum):
    """The runner's goal, which sets the band the hill share should stay in."""

    ROAD_MARATHON = "road-marathon"
    HALF_MARATHON = "half-marathon"
    TEN_K = "10k"
    GENERAL = "general"
    TRAIL = "trail"
    MOUNTAIN = "mountain"
    ULTRA_TRAIL = "ultra-trail"
    CUSTOM = "custom"


#: Goal bands by profile: (hill_share_min, hill_share_max, downhill_share_max).
GOAL_BANDS: Mapping[GoalProfile, tuple[float, float, float]] = {
    GoalProfile.ROAD_MARATHON: (0.10, 0.25, 0.10),
    GoalProfile.HALF_MARATHON: (0.10, 0.25, 0.10),
    GoalProfile.TEN_K: (0.10, 0.30, 0.10),
    GoalProfile.GENERAL: (0.15, 0.35, 0.15),
    GoalProfile.TRAIL: (0.30, 0.55, 0.25),
    GoalProfile.MOUNTAIN: (0.45, 0.75, 0.35),
    GoalProfile.ULTRA_TRAIL: (0.35, 0.60, 0.30),
}


@dataclass(frozen=True)
class Goal:
    """The band the hill share should stay in, over `window_days`."""

    profile: GoalProfile
    hill_share_min: float
    hill_share_max: float
    downhill_share_max: float
    window_days: int = 28
    race_date: date | None = None
    #: The least share of the window's distance on downhill 100 m segments (`downhill_low`
    #: below it); None: no minimum unless the race course sets one.
    downhill_share_min: float | None = None


class BalanceStatus(enum.StrEnum):
    """Where the hill share stands against the goal band."""

    OK = "ok"
    LOW = "low"
    HIGH = "high"
    DOWNHILL_HIGH = "downhill_high"
    DOWNHILL_LOW = "downhill_low"
    INSUFFICIENT_DATA = "insufficient_data"

    @classmethod
    def stored(cls, value: str | None) -> BalanceStatus | None:
        """The status a stored balance state names, or None when there is none or it is
        unknown (written by a newer or older version: evaluation then starts afresh).
        The one reader of stored balance states. Raises nothing."""
        if value is None:
            return None
        try:
            return cls(value)
        except ValueError:
            return None


@dataclass(frozen=True)
class RunForBalance:
    """One deduplicated run as the balance sees it.

    `uphill_m`, `downhill_m` and `flat_m` are its 100 m segment split (all 0 when the run had
    no profile); `hill_repeats` the hill-repeat session found in it, if any.
    """

    start_time: datetime
    distance_m: float
    label: Terrain
    elevation_gain_m: float | None = None
    elevation_loss_m: float | None = None
    uphill_m: float = 0.0
    downhill_m: float = 0.0
    flat_m: float = 0.0
    hill_repeats: HillRepeats | None = None
    elevation_source: str | None = None


@dataclass(frozen=True)
class TerrainVolume:
    """Terrain volume of a window: metres on 100 m segments, vertical, ITRA km-effort."""

    uphill_m: float = 0.0
    downhill_m: float = 0.0
    flat_m: float = 0.0
    gain_m: float = 0.0
    loss_m: float = 0.0
    #: ITRA kilometre-effort: distance in km + elevation gain in metres / 100.
    km_effort: float = 0.0


@dataclass(frozen=True)
class HillSessions:
    """The hill-repeat sessions of a window: how many, and the start of the last one."""

    count: int = 0
    last: datetime | None = None


@dataclass(frozen=True)
class DownhillWeek:
    """This week's descent against the average of the 4 weeks before (ISO weeks, UTC)."""

    week_start: date
    loss_m: float
    average_m: float
    #: True when this week rises past the ramp limit (a warning, once per week).
    ramp: bool


@dataclass(frozen=True)
class CourseFigures:
    """The terrain of a race course (`[goal] course`), as the classifier measures a run.

    `uphill_m`/`downhill_m`/`flat_m` are its 100 m segment split; the longest climb (and
    descent) is the largest height won (lost) in one go, dips under 10 m not breaking it.
    """

    name: str
    distance_m: float
    gain_m: float
    loss_m: float
    uphill_m: float
    downhill_m: float
    flat_m: float
    longest_climb_m: float
    longest_climb_length_m: float
    longest_descent_m: float
    longest_descent_length_m: float


@dataclass(frozen=True)
class CourseTargets:
    """The training targets a course sets, and which of them came from it (`from_course`)."""

    figures: CourseFigures
    uphill_share: float
    downhill_share: float
    descending: bool
    hill_share_min: float
    hill_share_max: float
    downhill_share_min: float | None
    vertical_week_target_m: float
    from_course: tuple[str, ...] = ()


@dataclass(frozen=True)
class BalanceReport:
    """The hill balance of one athlete over one window."""

    athlete: str
    window_start: datetime
    window_end: datetime
    runs: int
    distance_m: float
    by_label: Mapping[Terrain, float]
    hill_share: float | None
    downhill_share: float | None
    vertical_m: float
    goal: Goal
    status: BalanceStatus
    advice: str
    terrain: TerrainVolume = field(default_factory=TerrainVolume)
    hill_sessions: HillSessions = field(default_factory=HillSessions)
    course: CourseTargets | None = None
    #: Elevation gain of the 7 days up to the window's end (for the course's weekly target).
    vertical_week_m: float = 0.0
    downhill_week: DownhillWeek | None = None
    #: Share of the known-label distance whose elevation is GPS-only (a file profile
    #: without device totals); None without such distance.
    gps_only_share: float | None = None


@dataclass(frozen=True)
class Message:
    """A notification to deliver: a title and a body of plain text.

    `attachment` (with its file name) is sent along where the service takes attachments.
    """

    kind: str
    title: str
    body: str
    athlete: str = "me"
    attachment: bytes | None = None
    attachment_name: str | None = None


@dataclass(frozen=True)
class Rejected:
    """An item a source could not read, with a one-line reason."""

    key: str
    reason: str
    fingerprint: str = ""


@dataclass(frozen=True)
class Batch:
    """What a source yields: activities to store together with the cursor that follows them.

    The worker commits a batch's activities, its `seen` items and its `cursor` in one
    transaction, so that a crash between two batches neither loses nor repeats anything.
    `seen` maps item keys (a folder's file paths) to their fingerprint (size and mtime),
    including items that were rejected or were not runs, so they are not read again.
    `cursor` is the source's own JSON-serialisable progress; None leaves it unchanged.
    `deleted` lists source ids found gone (a full re-list). `waiting` lists items not read
    yet (a file still being written), left out of `seen` so the next sync reads them;
    `total` is how many items this fetch has in all, when the source knows.
    """

    activities: Sequence[Activity] = ()
    rejected: Sequence[Rejected] = ()
    seen: Mapping[str, str] = field(default_factory=dict)
    cursor: Mapping[str, Any] | None = None
    deleted: Sequence[str] = ()
    waiting: Sequence[str] = ()
    total: int | None = None


#: Start and end closer than this make a loop (its loss equals its gain).
LOOP_TOLERANCE_M = 200.0
EARTH_RADIUS_M = 6_371_008.8


def haversine_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in metres between two (lat, lon) points in degrees."""
    lat1, lon1 = math.radians(a[0]), math.radians(a[1])
    lat2, lon2 = math.radians(b[0]), math.radians(b[1])
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, h)))


def is_loop(start: tuple[float, float] | None, end: tuple[float, float] | None) -> bool | None:
    """Whether a route ends where it started (None when either end is unknown)."""
    if start is None or end is None:
        return None
    return haversine_m(start, end) <= LOOP_TOLERANCE_M


def turning_points(z: FloatArray, min_change: float) -> list[int]:
    """Indexes of alternating lows and highs of z, each more than min_change from the one before.

    A zigzag: the current extreme is followed until the series turns back by more than
    min_change. The first point is the first extreme before the first real change of
    direction. Only the ends and the local extremes can be turning points, so the zigzag
    walks those (found with numpy) rather than every sample.
    """
    import numpy as np

    n = z.size
    if n < 2:
        return []
    d = np.diff(z)
    moving = np.flatnonzero(d != 0.0)
    if moving.size == 0:
        return []
    s = np.sign(d[moving])
    # a change of sign between two moving steps: the extreme is the first sample after the
    # earlier step (the start of a plateau, as the sample-by-sample zigzag would take it)
    turns = moving[:-1][s[1:] != s[:-1]] + 1
    candidates = np.concatenate(([0], turns, [n - 1]))
    zc: list[float] = z[candidates].tolist()
    lo = hi = 0
    i = 1
    direction = 0
    ext = 0
    points: list[int] = []
    m = len(zc)
    while i < m and direction == 0:
        if zc[i] > zc[hi]:
            hi = i
        if zc[i] < zc[lo]:
            lo = i
        if zc[hi] - zc[lo] > min_change:
            direction, points, ext = (1, [lo], hi) if hi > lo else (-1, [hi], lo)
        i += 1
    if direction == 0:
        return []
    for j in range(i, m):
        if direction == 1:
            if zc[j] > zc[ext]:
                ext = j
            elif zc[ext] - zc[j] > min_change:
                points.append(ext)
                direction, ext = -1, j
        elif zc[j] < zc[ext]:
            ext = j
        elif zc[j] - zc[ext] > min_change:
            points.append(ext)
            direction, ext = 1, j
    points.append(ext)
    return [int(candidates[p]) for p in points]
