"""`hillsync classify`: activity files classified offline; nothing is stored."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hillsync.model import Classification, ClassifyParams


@dataclass(frozen=True)
class ClassifiedFile:
    """One file's classification, or the one-line reason it could not be read."""

    file: str
    sport: str | None = None
    result: Classification | None = None
    error: str | None = None
    warning: str | None = None
    #: 1, 2, ... for each activity of a file holding several; None for a file holding one.
    part: int | None = None

    def as_json(self) -> dict[str, object]:
        """The `classify --json` entry of DESIGN.md section 2."""
        c = self.result

        def metres(value: float | None) -> float | None:
            return None if value is None else round(float(value), 1)

        row: dict[str, object] = {
            "file": self.file,
            "sport": self.sport,
            "label": c.label.value if c else None,
            "distance_m": metres(c.distance_m) if c else None,
            "elevation_gain_m": metres(c.elevation_gain_m) if c else None,
            "elevation_loss_m": metres(c.elevation_loss_m) if c else None,
            "uphill_m": metres(c.uphill_m) if c else None,
            "downhill_m": metres(c.downhill_m) if c else None,
            "flat_m": metres(c.flat_m) if c else None,
            "error": self.error,
            "elevation_source": c.elevation_source if c else None,
            "reason": c.reason if c else None,
            "warning": self.warning,
        }
        if self.part is not None:
            row["part"] = self.part
        return row


def classify_files(
    names: Sequence[str],
    params: ClassifyParams,
    *,
    untyped: str = "infer",
    progress: Callable[[int, int], None] | None = None,
) -> list[ClassifiedFile]:
    """Each file classified, in argument order, one entry per activity it holds (a TCX with
    several gives each, numbered by `part`); a file that cannot be read gets its reason and
    the others are still classified. `untyped` is `[sync] untyped`; `progress(done, total)`
    is called after each file. Raises nothing for a bad file."""
    from hillsync.errors import BadActivity
    from hillsync.pipeline import classify_activity
    from hillsync.sources.fileformats import read_activities

    out: list[ClassifiedFile] = []
    for done, name in enumerate(names, start=1):
        try:
            activities = read_activities(Path(name), untyped=untyped)
        except BadActivity as exc:
            out.append(ClassifiedFile(name, error=str(exc)))
        else:
            for activity in activities:
                _profile, result = classify_activity(activity, params)
                out.append(
                    ClassifiedFile(
                        name, activity.sport, result, warning=activity.warning, part=activity.part
                    )
                )
        if progress is not None:
            progress(done, len(names))
    return out
