"""Jinja2 templates of the pages, shared by `hillsync serve` and `report --out FILE.html`.

Autoescaping is on for every template: a run's name comes from a file or from Strava.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from functools import cache
from importlib import resources
from typing import Any

import jinja2

from hillsync.report import Dashboard


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.0f} %"


def _km(metres: float | None) -> str:
    return "-" if metres is None else f"{metres / 1000:.1f}"


def _metres(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _day(value: datetime | date | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        value = value.astimezone(UTC).date()
    return value.isoformat()


def _moment(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _status_text(value: object) -> str:
    return str(value).replace("_", " ")


@cache
def environment() -> jinja2.Environment:
    """The template environment (loaded once; templates ship inside the package)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("hillsync.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        pct=_pct, km=_km, metres=_metres, day=_day, moment=_moment, status_text=_status_text
    )
    return env


@cache
def stylesheet() -> str:
    """The pages' stylesheet (served at /static/style.css, inlined in a standalone page)."""
    return (resources.files("hillsync.web") / "static" / "style.css").read_text(encoding="utf-8")


def render(template: str, context: Mapping[str, Any]) -> str:
    """Render one template; every page gets `notices`, `nav`, `csrf`, `links` defaults.

    Raises jinja2.TemplateError on a broken template (a bug, not an input problem).
    """
    base: dict[str, Any] = {
        "standalone": False,
        "css": "",
        "static_url": "/static/style.css",
        "notices": [],
        "nav": None,
        "csrf": "",
        "links": None,
    }
    base.update(context)
    return environment().get_template(template).render(base)


def render_standalone_dashboard(dashboard: Dashboard, charts: Mapping[str, str]) -> str:
    """The dashboard as one self-contained page: stylesheet inline, charts as data: URIs."""
    return render(
        "dashboard.html",
        {"standalone": True, "css": stylesheet(), "d": dashboard, "charts": charts},
    )
