"""Classify a source's batch and store it: the step between a source and the store.

An activity is classified before it is stored, so that it and its label commit together
with the source's cursor in one transaction. `classify_activity` is also what `hillsync
classify` uses offline, and `needs_profile_check` what an API source asks before it spends
a request on a stream.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from typing import TYPE_CHECKING

from hillsync.model import Activity, Batch, Classification, ClassifyParams, Profile, Summary
from hillsync.store import repo
from hillsync.store.db import Database

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def summary_of(activity: Activity) -> Summary:
    """What the classifier needs of an activity's summary. Raises nothing."""
    return Summary(
        sport=activity.sport,
        distance_m=activity.distance_m,
        reported_gain_m=activity.reported_gain_m,
        reported_loss_m=activity.reported_loss_m,
        elevation_range_m=activity.elevation_range_m,
        start_latlng=activity.start_latlng,
        end_latlng=activity.end_latlng,
        indoor=activity.indoor,
        # A file's totals are the recording device's own; an API's are its summary's.
        totals_from="device" if activity.elevation_source == "file" else "summary",
    )


def classify_activity(
    activity: Activity, params: ClassifyParams
) -> tuple[Profile | None, Classification]:
    """The activity's cleaned profile (if it has samples) and its classification.

    Raises BadActivity when its samples cannot be made into a profile.
    """
    # Here, not at the top: classify and hills import numpy, which a quiet poll, `status`
    # and `balance` never need.
    from hillsync import classify, hills

    profile = activity.profile
    if profile is None and activity.track is not None and len(activity.track):
        profile = classify.build_profile(activity.track)
    c = classify.classify(summary_of(activity), profile, params)
    return profile, hills.with_hill_repeats(c, profile)


def profiled(activity: Activity) -> Activity:
    """The activity with its track's profile in place of the track (`classify.with_profile`),
    for a folder's reading processes; numpy is imported only here, on first use. Raises
    nothing."""
    from hillsync.classify import with_profile

    return with_profile(activity)


def needs_profile_check(params: ClassifyParams) -> Callable[[Activity], bool]:
    """A predicate for API sources: does this summary need its profile to be labelled?"""

    def needs_profile(activity: Activity) -> bool:
        from hillsync import classify

        return classify.classify(summary_of(activity), None, params).needs_profile

    return needs_profile


def store_batch(
    db: Database,
    state_id: int,
    batch: Batch,
    params: ClassifyParams,
    run_sports: Collection[str],
    now: datetime,
    fence: Callable[[Session], None] | None = None,
) -> repo.BatchResult:
    """Classify every activity of `batch`, then store it with the source's cursor in one
    transaction. `fence` runs first in that transaction (the worker renews its lease there,
    so a batch commits only while the worker holds the source). Raises StoreError when the
    database fails (LeaseLost from the fence), BadActivity when an activity's samples
    cannot be classified."""
    classified = {a.source_id: classify_activity(a, params) for a in batch.activities}
    with db.session() as session:
        if fence is not None:
            fence(session)
        state_row = repo.get_sync_state(session, state_id)
        return repo.save_batch(session, state_row, batch, classified, run_sports, now)
