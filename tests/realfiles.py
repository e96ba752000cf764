"""Files built in the tests from the real device recordings of tests/data/fit.

Every recording is read with fitdecode (an independent reader), then written out as the
GPX or TCX another device or app would have written for the same movement: so an untyped
ride is a real ride's track without its type, not an invented one. Expected values come
from what the device wrote (its session sport and totals), never from hillsync.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fitdecode

FIT = Path(__file__).parent / "data" / "fit"
SEMICIRCLE = 180.0 / 2**31


@dataclass(frozen=True)
class Point:
    """One FIT record, as fitdecode reads it."""

    time: datetime
    lat: float | None
    lon: float | None
    alt: float | None
    dist: float | None
    cadence: float | None


@dataclass(frozen=True)
class Session:
    """One FIT session (a leg of a multisport file), as fitdecode reads it."""

    sport: str
    start: datetime
    elapsed_s: float
    distance_m: float | None


def fit_records(name: str) -> list[Point]:
    """Every record with a timestamp of a real FIT file."""
    out: list[Point] = []
    with fitdecode.FitReader(str(FIT / name)) as reader:
        for frame in reader:
            if not isinstance(frame, fitdecode.FitDataMessage) or frame.name != "record":
                continue
            t = frame.get_value("timestamp", fallback=None)
            if not isinstance(t, datetime):
                continue
            lat = frame.get_value("position_lat", fallback=None)
            lon = frame.get_value("position_long", fallback=None)
            alt = frame.get_value("enhanced_altitude", fallback=None)
            if alt is None:
                alt = frame.get_value("altitude", fallback=None)
            out.append(
                Point(
                    time=t.astimezone(UTC),
                    lat=lat * SEMICIRCLE if isinstance(lat, int) else None,
                    lon=lon * SEMICIRCLE if isinstance(lon, int) else None,
                    alt=float(alt) if alt is not None else None,
                    dist=frame.get_value("distance", fallback=None),
                    cadence=frame.get_value("cadence", fallback=None),
                )
            )
    return out


def fit_sessions(name: str) -> list[Session]:
    """The sessions (legs) of a real FIT file."""
    out: list[Session] = []
    with fitdecode.FitReader(str(FIT / name)) as reader:
        for frame in reader:
            if isinstance(frame, fitdecode.FitDataMessage) and frame.name == "session":
                out.append(
                    Session(
                        sport=str(frame.get_value("sport")),
                        start=frame.get_value("start_time").astimezone(UTC),
                        elapsed_s=float(frame.get_value("total_elapsed_time")),
                        distance_m=frame.get_value("total_distance", fallback=None),
                    )
                )
    return out


def leg(points: list[Point], session: Session) -> list[Point]:
    """The records of one session's time span."""
    end = session.start + timedelta(seconds=session.elapsed_s + 1)
    return [p for p in points if session.start <= p.time <= end]


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def gpx(
    points: list[Point],
    *,
    sport: str | None = None,
    creator: str = "hillsync tests",
    with_ele: bool = True,
) -> str:
    """A GPX track of the points (those with a position), as Garmin Connect exports it."""
    kind = f"<type>{sport}</type>" if sport is not None else ""
    rows = []
    for p in points:
        if p.lat is None or p.lon is None:
            continue
        ele = f"<ele>{p.alt:.1f}</ele>" if with_ele and p.alt is not None else ""
        cad = (
            f"<extensions><gpxtpx:TrackPointExtension><gpxtpx:cad>{p.cadence:.0f}</gpxtpx:cad>"
            "</gpxtpx:TrackPointExtension></extensions>"
            if p.cadence is not None
            else ""
        )
        rows.append(
            f'<trkpt lat="{p.lat:.7f}" lon="{p.lon:.7f}">{ele}<time>{_iso(p.time)}</time>'
            f"{cad}</trkpt>\n"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<gpx version="1.1" creator="{creator}" xmlns="http://www.topografix.com/GPX/1/1" '
        'xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v1">\n'
        f"<trk><name>test</name>{kind}<trkseg>\n{''.join(rows)}</trkseg></trk></gpx>\n"
    )


def tcx_activity(points: list[Point], sport: str, distance_m: float | None = None) -> str:
    """One TCX <Activity> with one lap holding the points, as Garmin Connect exports it."""
    first = points[0]
    d0 = next((p.dist for p in points if p.dist is not None), 0.0)
    rows = []
    for p in points:
        pos = (
            f"<Position><LatitudeDegrees>{p.lat:.7f}</LatitudeDegrees>"
            f"<LongitudeDegrees>{p.lon:.7f}</LongitudeDegrees></Position>"
            if p.lat is not None and p.lon is not None
            else ""
        )
        alt = f"<AltitudeMeters>{p.alt:.1f}</AltitudeMeters>" if p.alt is not None else ""
        dist = f"<DistanceMeters>{p.dist - d0:.2f}</DistanceMeters>" if p.dist is not None else ""
        rows.append(f"<Trackpoint><Time>{_iso(p.time)}</Time>{pos}{alt}{dist}</Trackpoint>\n")
    seconds = (points[-1].time - first.time).total_seconds()
    lap_dist = distance_m if distance_m is not None else (points[-1].dist or 0.0) - d0
    return (
        f'<Activity Sport="{sport}"><Id>{_iso(first.time)}</Id>'
        f'<Lap StartTime="{_iso(first.time)}"><TotalTimeSeconds>{seconds:.1f}</TotalTimeSeconds>'
        f"<DistanceMeters>{lap_dist:.2f}</DistanceMeters><Track>\n{''.join(rows)}</Track></Lap>"
        "</Activity>\n"
    )


def tcx(activities: list[str], multisport: bool = False) -> str:
    """A TCX file holding the activities, or one multisport session of them as legs."""
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<TrainingCenterDatabase '
        'xmlns="http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2">\n'
    )
    if multisport:
        legs = [f"<FirstSport>{activities[0]}</FirstSport>"] + [
            f"<NextSport>{a}</NextSport>" for a in activities[1:]
        ]
        body = f"<MultiSportSession><Id>x</Id>{''.join(legs)}</MultiSportSession>"
        return head + f"<Activities>{body}</Activities></TrainingCenterDatabase>\n"
    return head + f"<Activities>{''.join(activities)}</Activities></TrainingCenterDatabase>\n"


def fit_crc(data: bytes) -> int:
    """FIT's CRC-16 (the SDK's nibble-table algorithm), written out for the tests."""
    table = (
        0x0000, 0xCC01, 0xD801, 0x1400, 0xF001, 0x3C00, 0x2800, 0xE401,
        0xA001, 0x6C00, 0x7800, 0xB401, 0x5000, 0x9C01, 0x8801, 0x4400,
    )  # fmt: skip
    crc = 0
    for byte in data:
        tmp = table[crc & 0xF]
        crc = (crc >> 4) & 0x0FFF
        crc = crc ^ tmp ^ table[byte & 0xF]
        tmp = table[crc & 0xF]
        crc = (crc >> 4) & 0x0FFF
        crc = crc ^ tmp ^ table[(byte >> 4) & 0xF]
    return crc


def file_id_type_offset(data: bytes) -> int:
    """The byte offset of file_id.type in a FIT file whose first messages are the
    file_id definition and its data message (as every Garmin device writes them)."""
    pos = data[0]
    header = data[pos]
    assert header & 0x40, "the first message is not a definition"
    arch = data[pos + 2]
    fmt = "<H" if arch == 0 else ">H"
    assert struct.unpack_from(fmt, data, pos + 3)[0] == 0, "not the file_id definition"
    nfields = data[pos + 5]
    fields = [
        (data[pos + 6 + 3 * i], data[pos + 7 + 3 * i]) for i in range(nfields)
    ]  # (number, size)
    offset = pos + 6 + 3 * nfields
    if header & 0x20:  # developer fields follow
        offset += 1 + 3 * data[offset]
    offset += 1  # the data message's own header byte
    for number, size in fields:
        if number == 0:
            return offset
        offset += size
    raise AssertionError("file_id has no type field")


def with_file_type(data: bytes, file_type: int) -> bytes:
    """A real FIT file relabelled as another file type, with its CRC made right again."""
    out = bytearray(data)
    out[file_id_type_offset(data)] = file_type
    end = data[0] + struct.unpack_from("<I", data, 4)[0]
    struct.pack_into("<H", out, end, fit_crc(bytes(out[:end])))
    return bytes(out)
