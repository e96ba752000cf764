"""The race course of `[goal] course`, read from its file for the balance.

The I/O half of hillsync.course: the file is read with the activity readers
(sources.fileformats), cleaned and classified like a run, and its figures handed to the pure
hillsync.course. The balance itself never reads a file. A course that cannot be read is
reported and left out: the profile's band applies, nothing else is lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import structlog

from hillsync.errors import BadActivity, ConfigError
from hillsync.model import ClassifyParams, CourseFigures, CourseTargets, Goal, Summary

log = structlog.get_logger(__name__)


def load_course(path: Path, params: ClassifyParams) -> CourseFigures:
    """The terrain figures of the course file at `path` (GPX track, FIT or TCX).

    Raises ConfigError ("goal.course: NAME: reason") when the file cannot be read or holds
    no usable elevation profile.
    """
    # Here, not at the top: the worker holds a CourseReader, and an idle daemon without a
    # course must not load numpy and the file readers.
    from hillsync import classify, course
    from hillsync.sources.fileformats import read_activity

    try:
        activity = read_activity(path)
    except BadActivity as exc:
        raise ConfigError(f"goal.course: {path.name}: {exc}") from exc
    profile = None
    if activity.profile is not None:
        profile = activity.profile
    elif activity.track is not None and len(activity.track):
        profile = classify.build_profile(activity.track)
    if profile is None:
        raise ConfigError(f"goal.course: {path.name}: the file holds no elevation profile")
    # The course's own profile decides: a route file has no device totals worth more.
    c = classify.classify(Summary(sport="run", distance_m=None), profile, params)
    return course.figures(profile, c, path.name)


@dataclass
class CourseReader:
    """Reads course files once, again only when the file changes (size or mtime)."""

    params: ClassifyParams
    _cache: dict[Path, tuple[tuple[int, int], CourseFigures]] = field(default_factory=dict)

    def figures(self, path: Path) -> CourseFigures:
        """The course's figures. Raises ConfigError as `load_course` does."""
        try:
            st = path.stat()
        except OSError as exc:
            raise ConfigError(f"goal.course: {path.name}: cannot be read ({exc.strerror})") from exc
        key = (st.st_size, st.st_mtime_ns)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        found = load_course(path, self.params)
        self._cache[path] = (key, found)
        return found

    def targets(self, path: Path | None, goal: Goal, today: date) -> CourseTargets | None:
        """The course's targets for `goal` on `today`, or None without a (readable) course.

        An unreadable course is logged and left out (the profile band applies).
        """
        if path is None:
            return None
        from hillsync import course

        try:
            return course.targets(self.figures(path), goal, today)
        except ConfigError as exc:
            log.warning("course_unreadable", error=str(exc))
            return None
