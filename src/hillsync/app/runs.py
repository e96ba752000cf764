"""`hillsync activities` and `hillsync reclassify`: the stored runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING

from hillsync.app.context import AppContext
from hillsync.model import Terrain, iso_utc

if TYPE_CHECKING:
    from hillsync.store.repo import RunView


def list_runs(
    ctx: AppContext,
    *,
    athlete: str | None = None,
    since: date | None = None,
    label: Terrain | None = None,
) -> list[RunView]:
    """Deduplicated runs, oldest first (of one athlete, from a day, of a label).

    Raises StoreError when the database fails.
    """
    from hillsync.store import repo

    start = datetime.combine(since, time(0), tzinfo=UTC) if since is not None else None
    with ctx.db.session(readonly=True) as session:
        return repo.list_runs(
            session,
            athlete=athlete,
            since=start,
            label=label.value if label is not None else None,
        )


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(float(value), digits)


def run_json(run: RunView) -> dict[str, object]:
    """One run in the `activities --json` shape of DESIGN.md section 2. Raises nothing."""
    return {
        "id": run.id,
        "athlete": run.athlete,
        "start_time": iso_utc(run.start_time),
        "sport": run.sport,
        "label": run.label,
        "distance_m": _rounded(run.distance_m),
        "moving_time_s": _rounded(run.moving_time_s, 0),
        "elevation_gain_m": _rounded(run.elevation_gain_m),
        "elevation_loss_m": _rounded(run.elevation_loss_m),
        "sources": [{"source": s, "source_id": i} for s, i in run.sources],
        "elevation_source": run.elevation_source,
        "hill_repeats": None
        if (h := run.hill_repeats) is None
        else {"count": h.count, "length_m": h.length_m, "grade_pct": h.grade_pct},
        "reason": run.reason,
    }


@dataclass(frozen=True)
class ReclassifyResult:
    """What `reclassify` did: activities classified again, labels that changed."""

    total: int
    changed: int


def reclassify(ctx: AppContext) -> ReclassifyResult:
    """Recompute every stored activity's label from its stored summary and profile with the
    current `[classify]` thresholds (no API call), in one transaction.

    Raises StoreError when the database fails or a stored profile cannot be decoded.
    """
    from hillsync.classify import classify
    from hillsync.hills import with_hill_repeats
    from hillsync.store import repo

    params = ctx.settings.classify
    with ctx.db.session() as session:
        total, changed = repo.reclassify_all(
            session,
            lambda summary, profile: with_hill_repeats(classify(summary, profile, params), profile),
        )
    return ReclassifyResult(total, changed)
