"""The folder source: FIT, GPX and TCX files (also .gz) and Strava / Garmin export folders.

A file is known by its path relative to the folder and its fingerprint (size and mtime):
a rescan only stats files, so a folder of ten thousand runs costs no reading. Whether a file
is complete is judged from its content, not its age: one that parses completely is imported
at once; one that does not and changed within the last minute waits for the next sync
(not recorded, so it is read again); after that it is salvaged (its complete points, with a
warning) or rejected with its reason, once, and never blocks the files beside it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import operator
import os
import re
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from hillsync.errors import BadActivity, SourceUnavailable
from hillsync.model import Activity, Batch, Rejected
from hillsync.parallel import MIN_ITEMS_FOR_POOL, pool_mapper
from hillsync.sources.base import SourceState
from hillsync.sources.filenames import SCANNED_SUFFIXES

# The readers (fileformats: numpy, lxml, fitdecode, about 30 MB) are imported where a file
# is read, never by a poll that finds nothing new (an idle daemon stays small).

log = structlog.get_logger(__name__)

#: The sort key of a folder's entries (C speed: a scan sorts every folder it lists).
_entry_name = operator.attrgetter("name")

#: A file that does not parse completely and changed more recently than this may still be
#: being written (a watch syncing over USB, a copy in progress): it waits for the next
#: sync. A file that parses completely is imported at once, however new.
SETTLE_S = 60.0
STRAVA_CSV = "activities.csv"


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _ExportInfo:
    """What an export's index says of one file (Strava activities.csv, Garmin summaries)."""

    sport: str | None
    name: str | None
    remote_id: str | None
    origin: str


@dataclass(frozen=True, slots=True)
class _Item:
    """One unit of work: a file, a zip member, or the marker that a zip is done."""

    key: str
    fingerprint: str
    path: Path
    member: str | None = None
    marker: bool = False
    #: Changed within SETTLE_S: when it does not parse completely, it waits.
    young: bool = False


class FolderSource:
    """A folder of activity files, rescanned by size and mtime."""

    def __init__(
        self,
        name: str,
        path: Path,
        *,
        batch_size: int = 50,
        clock: Callable[[], datetime] = _utcnow,
        settle_s: float = SETTLE_S,
        untyped: str = "infer",
        workers: int = 1,
        prepare: Callable[[Activity], Activity] | None = None,
    ) -> None:
        """`workers` above 1 reads plain files in a process pool of that size. `prepare`
        runs on each activity read, in the reading process (a module-level function: it
        crosses to the pool by name); the worker passes the classifier's profile step."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._workers = workers
        self._name = name
        self._path = path.expanduser()
        self._batch_size = batch_size
        self._clock = clock
        self._settle_s = settle_s
        self._untyped = untyped
        self._prepare = prepare

    @property
    def name(self) -> str:
        """The source's name (a folder's `name` key, by default "folder")."""
        return self._name

    @property
    def kind(self) -> str:
        """Always "folder"."""
        return "folder"

    @property
    def path(self) -> Path:
        """The folder scanned."""
        return self._path

    def fetch(self, state: SourceState) -> Iterator[Batch]:
        """Yield batches of the new or changed files; known files are not even opened.

        Raises SourceUnavailable when the folder does not exist or cannot be listed.
        """
        root = self._path
        if not root.exists():
            raise SourceUnavailable(f"folder {root} does not exist", source=self._name)
        if not root.is_dir():
            raise SourceUnavailable(f"{root} is not a folder", source=self._name)
        now = self._clock().timestamp()
        present: set[str] = set()
        items, exports = self._scan(root, state.seen, now, present)
        deleted: list[str] = []
        if state.full and state.seen and not present:
            # An empty folder that used to hold files is far more likely an unmounted disk
            # than a runner who deleted every run.
            log.warning("folder_empty_not_deleting", source=self._name, known=len(state.seen))
        elif state.full:
            # Only a full re-list reports deletions: a folder on a USB disk that is not
            # mounted yet must not look like every run was deleted at each poll.
            deleted = sorted(
                key
                for key in state.seen
                if key not in present and key.split(".zip/", 1)[0] + ".zip" not in present
            )
        log.info("folder_scanned", source=self._name, pending=sum(not i.marker for i in items))
        # Plain files are read (parsed: most of an import) in a process pool, in order;
        # zip members and the export indexes stay here. Same batches as a serial read.
        plain = [
            (i.path, self._name, i.key, self._untyped, self._prepare) for i in items if _is_plain(i)
        ]
        workers = self._workers if len(plain) >= MIN_ITEMS_FOR_POOL else 1
        if not items and not deleted:
            return
        with pool_mapper(workers) as mapper:
            yield from self._batches(root, items, exports, deleted, mapper(_read_file, plain))

    def _batches(
        self,
        root: Path,
        items: list[_Item],
        exports: Mapping[str, Path],
        deleted: list[str],
        reads: Iterator[tuple[list[Activity], str | None]],
    ) -> Iterator[Batch]:
        from hillsync.sources.fileformats import describe_file_error

        indexes: dict[Path, Mapping[str, _ExportInfo]] = {}
        garmin_index: Mapping[str, _ExportInfo] | None = None

        activities: list[Activity] = []
        rejected: list[Rejected] = []
        seen: dict[str, str] = {}
        waiting: list[str] = []
        total = sum(not i.marker for i in items)
        count = 0
        for item in items:
            if item.marker:
                if not any(w.startswith(item.key + "/") for w in waiting):
                    seen[item.key] = item.fingerprint
                continue
            try:
                if item.member is None:
                    found, why = next(reads)
                    if why is not None:
                        raise BadActivity(why)  # rejected in the pool: already the reason
                    export_dir = exports.get(item.key)
                    if export_dir is not None:
                        if export_dir not in indexes:
                            indexes[export_dir] = _read_strava_csv(export_dir / STRAVA_CSV)
                        rel = item.path.relative_to(export_dir).as_posix()
                        info = indexes[export_dir].get(rel)
                        found = [_apply_export(a, info) for a in found]
                else:
                    found = self._read_member(item)
                    if garmin_index is None:
                        garmin_index = _read_garmin_summaries(root)
                    info = garmin_index.get(_garmin_id(item.member) or "")
                    found = [_apply_export(a, info) for a in found]
                if any(a.warning for a in found) and item.young:
                    # Cut off, and written a moment ago: the rest is probably coming.
                    waiting.append(item.key)
                else:
                    for activity in found:
                        if activity.warning:
                            log.warning(
                                "file_salvaged", source=self._name, file=item.key,
                                warning=activity.warning,
                            )  # fmt: skip
                    activities.extend(found)
                    seen[item.key] = item.fingerprint
            except BadActivity as exc:
                if item.young:
                    waiting.append(item.key)
                else:
                    reason = describe_file_error(exc)
                    log.warning("file_rejected", source=self._name, file=item.key, reason=reason)
                    rejected.append(Rejected(item.key, reason, item.fingerprint))
                    seen[item.key] = item.fingerprint
            count += 1
            if count >= self._batch_size:
                yield Batch(
                    activities=activities, rejected=rejected, seen=seen, total=total,
                    waiting=tuple(waiting),
                )  # fmt: skip
                activities, rejected, seen, waiting, count = [], [], {}, [], 0
        if waiting:
            # Said at info level, so that a runner who copied files a second ago and sees
            # "1 waiting" learns why.
            log.info("files still being written, left for the next sync", source=self._name,
                     files=len(waiting))  # fmt: skip
        if seen or deleted or waiting:
            yield Batch(
                activities=activities, rejected=rejected, seen=seen, deleted=deleted,
                total=total, waiting=tuple(waiting),
            )  # fmt: skip

    def _read_member(self, item: _Item) -> list[Activity]:
        """Raises BadActivity when the zip or the member cannot be read."""
        from hillsync.sources.fileformats import describe_file_error, read_zip_member

        assert item.member is not None
        try:
            with zipfile.ZipFile(item.path) as zf:
                return read_zip_member(
                    zf, item.member, source=self._name, source_id=item.key, untyped=self._untyped
                )
        except (zipfile.BadZipFile, OSError) as exc:
            raise BadActivity(f"damaged zip: {describe_file_error(exc)}") from exc

    def _scan(
        self,
        root: Path,
        seen: Mapping[str, str],
        now: float,
        present: set[str],
    ) -> tuple[list[_Item], dict[str, Path]]:
        """The work to do, in a deterministic order, and which keys belong to a Strava export.

        Every candidate file's key is added to `present`, changed or not; new or changed
        files modified within SETTLE_S are marked young.

        Raises SourceUnavailable when the folder cannot be listed.
        """
        items: list[_Item] = []
        exports: dict[str, Path] = {}
        settle_ns = int(self._settle_s * 1e9)
        now_ns = int(now * 1e9)
        # Entries waiting, last first: a folder's entries replace it on the stack in name
        # order, so the walk visits paths in lexicographic order, depth first.
        stack: list[tuple[os.DirEntry[str] | None, str, Path | None]] = [(None, "", None)]
        while stack:
            entry, key, export_dir = stack.pop()
            if entry is None or entry.is_dir(follow_symlinks=False):
                folder = root if entry is None else Path(entry.path)
                try:
                    with os.scandir(folder) as it:
                        entries = [e for e in it if e.name[0] != "."]
                    entries.sort(key=_entry_name)
                except OSError as exc:
                    if entry is None:
                        raise SourceUnavailable(
                            f"folder {root} cannot be listed: {exc.strerror}", source=self._name
                        ) from exc
                    log.warning("folder_unreadable", source=self._name, folder=key)
                    continue
                names = {e.name for e in entries}
                if STRAVA_CSV in names and "activities" in names:
                    export_dir = folder
                prefix = key + "/" if key else ""
                stack.extend((e, prefix + e.name, export_dir) for e in reversed(entries))
                continue
            lower = entry.name.lower()
            if not lower.endswith(SCANNED_SUFFIXES):
                continue
            is_zip = lower.endswith(".zip")
            try:
                st = entry.stat()
            except OSError:
                continue  # gone since the listing
            present.add(key)
            fingerprint = f"{st.st_size}:{st.st_mtime_ns}"
            if seen.get(key) == fingerprint:
                continue
            young = now_ns - st.st_mtime_ns < settle_ns
            path = Path(entry.path)
            if is_zip:
                items.extend(self._zip_items(path, key, fingerprint, seen, young))
            else:
                items.append(_Item(key, fingerprint, path, young=young))
                if export_dir is not None:
                    exports[key] = export_dir
        return items, exports

    def _zip_items(
        self, path: Path, key: str, fingerprint: str, seen: Mapping[str, str], young: bool
    ) -> list[_Item]:
        """The members of a changed zip not read before, then the marker that ends the zip."""
        try:
            with zipfile.ZipFile(path) as zf:
                infos = {i.filename: i for i in zf.infolist()}
                from hillsync.sources.fileformats import activity_members

                members = activity_members(zf)
        except (zipfile.BadZipFile, OSError) as exc:
            # Recorded as rejected by the zip's own key, once.
            return [_Item(key, fingerprint, path, member=f"<{type(exc).__name__}>", young=young)]
        out: list[_Item] = []
        for member in members:
            info = infos[member]
            member_fp = f"{info.file_size}:{info.CRC:08x}"
            member_key = f"{key}/{member}"
            if seen.get(member_key) != member_fp:
                out.append(_Item(member_key, member_fp, path, member=member, young=young))
        # The zip's own fingerprint is recorded after its members, in the batch holding the
        # last one, so a crash in the middle re-opens the zip instead of skipping the rest.
        out.append(_Item(key, fingerprint, path, marker=True))
        return out


def _is_plain(item: _Item) -> bool:
    return not item.marker and item.member is None


def _read_file(
    job: tuple[Path, str, str, str, Callable[[Activity], Activity] | None],
) -> tuple[list[Activity], str | None]:
    """Read one file (in a pool worker): (activities, None) or ([], the rejection's reason).

    Each activity is passed through `prepare` there when given. The reason travels as
    text: an exception would have to be pickled across processes.
    """
    from hillsync.sources.fileformats import describe_file_error, read_activities

    path, source, key, untyped, prepare = job
    try:
        found = read_activities(path, source=source, source_id=key, untyped=untyped)
    except BadActivity as exc:
        return [], describe_file_error(exc)
    return ([prepare(a) for a in found] if prepare is not None else found), None


def _apply_export(activity: Activity, info: _ExportInfo | None) -> Activity:
    if info is None:
        return activity
    raw: dict[str, Any] = dict(activity.raw or {})
    raw["export"] = {
        "origin": info.origin,
        "sport": info.sport,
        "name": info.name,
        "id": info.remote_id,
    }
    # Strava's CSV says what the runner filed the activity as; a Garmin FIT file already
    # says its own sport better than the export summary's type key.
    sport = activity.sport
    if info.sport and info.origin == "strava_export":
        from hillsync.sources.fileformats import map_sport

        sport = map_sport(info.sport)
    return dataclasses.replace(
        activity,
        sport=sport,
        name=info.name or activity.name,
        indoor=activity.indoor or sport in ("treadmill", "virtual_run"),
        raw=raw,
    )


def _read_strava_csv(path: Path) -> Mapping[str, _ExportInfo]:
    """Strava's activities.csv, by file name relative to the export; {} when unreadable.

    Strava's CSV repeats some column names (two "Distance" columns): the first one counts.
    """
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError:
        log.warning("export_index_unreadable", file=str(path.name))
        return {}
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if header is None:
        return {}
    col: dict[str, int] = {}
    for i, title in enumerate(header):
        col.setdefault(title.strip(), i)
    if "Filename" not in col:
        return {}

    def cell(row: list[str], title: str) -> str | None:
        i = col.get(title)
        if i is None or i >= len(row):
            return None
        return row[i].strip() or None

    out: dict[str, _ExportInfo] = {}
    for row in rows:
        filename = cell(row, "Filename")
        if not filename:
            continue
        out[filename.lstrip("/")] = _ExportInfo(
            sport=cell(row, "Activity Type"),
            name=cell(row, "Activity Name"),
            remote_id=cell(row, "Activity ID"),
            origin="strava_export",
        )
    return out


_GARMIN_ID = re.compile(r"(\d{6,})")


def _garmin_id(member: str) -> str | None:
    match = _GARMIN_ID.search(member.rsplit("/", 1)[-1])
    return match.group(1) if match else None


def _read_garmin_summaries(root: Path) -> Mapping[str, _ExportInfo]:
    """Garmin export summaries (DI-Connect-Fitness/*summarizedActivities.json) by activity id.

    Missing or damaged summaries give {}: the FIT files carry their own sport.
    """
    out: dict[str, _ExportInfo] = {}
    for path in sorted(root.rglob("*summarizedActivities*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("export_index_unreadable", file=path.name)
            continue
        blocks = data if isinstance(data, list) else [data]
        for block in blocks:
            entries = block.get("summarizedActivitiesExport") if isinstance(block, dict) else None
            if not isinstance(entries, list):
                continue
            for entry in entries:
                if not isinstance(entry, dict) or "activityId" not in entry:
                    continue
                sport = entry.get("activityType") or entry.get("sportType")
                if isinstance(sport, dict):
                    sport = sport.get("typeKey")
                name = entry.get("name")
                out[str(entry["activityId"])] = _ExportInfo(
                    sport=sport if isinstance(sport, str) else None,
                    name=name if isinstance(name, str) else None,
                    remote_id=str(entry["activityId"]),
                    origin="garmin_export",
                )
    return out
