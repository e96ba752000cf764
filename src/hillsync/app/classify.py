"""`hillsync classify`: activity files classified offline; nothing is stored."""

from __future__ import annotations

from collections.abc import Sequence
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

    def as_json(self) -> dict[str, object]:
        """The `classify --json` entry of DESIGN.md section 2."""
        c = self.result

        def metres(value: float | None) -> float | None:
            return None if value is None else round(float(value), 1)

        return {
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
            "warning": self.warning,
        }


def classify_files(names: Sequence[str], params: ClassifyParams) -> list[ClassifiedFile]:
    """Each file classified, in argument order; a file that cannot be read gets its reason
    and the others are still classified. Raises nothing for a bad file."""
    from hillsync.errors import BadActivity
    from hillsync.pipeline import classify_activity
    from hillsync.sources.fileformats import read_activity

    out: list[ClassifiedFile] = []
    for name in names:
        try:
            activity = read_activity(Path(name))
            _profile, result = classify_activity(activity, params)
        except BadActivity as exc:
            out.append(ClassifiedFile(name, error=str(exc)))
            continue
        damaged = (activity.raw or {}).get("damaged")
        warning = f"{damaged}: classified from what precedes the damage" if damaged else None
        out.append(ClassifiedFile(name, activity.sport, result, warning=warning))
    return out
