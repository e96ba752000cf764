"""The ASGI app of `hillsync serve`: pages, connect flows, Strava's push callback.

Operator pages live under `/a/ATHLETE`, `/sources`, `/connect`; a read-only share link opens
`/s/TOKEN` (that athlete's dashboard, runs and charts, nothing else). `/strava/webhook` needs
no login but takes only Strava's shapes, is rate-limited and answers before it acts.
Every error is a short page with a 4xx/5xx status, never a traceback.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import structlog
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hillsync.errors import HillsyncError, StoreError
from hillsync.model import Secret
from hillsync.render import render, stylesheet
from hillsync.report import profile_chart, share_chart, weekly_chart
from hillsync.web import security
from hillsync.web.backend import StravaEvent, WebBackend
from hillsync.web.webhook import WebhookError, parse_event, validation_answer

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]
Handler = Callable[[Request], Awaitable[Response]]

#: Largest request body accepted (a Garmin token file is a few KB).
MAX_BODY = 64 * 1024
MAX_WEBHOOK_BODY = 4 * 1024
#: The OAuth `state` of a browser connect is accepted this long.
CONNECT_TTL = timedelta(minutes=15)


@dataclass(frozen=True)
class WebOptions:
    """How the server is reached and guarded ([web] and the Strava webhook token)."""

    host: str = "127.0.0.1"
    port: int = 8722
    public_url: str | None = None
    password: Secret | None = None
    webhook_verify_token: Secret | None = None
    webhook_per_minute: int = 60
    login_per_minute: int = 10

    @property
    def login_required(self) -> bool:
        """A password is set: every operator page needs a login."""
        return self.password is not None

    def base_url(self, request: Request) -> str:
        """The address the outside world uses: `public_url`, else the request's own."""
        if self.public_url:
            return self.public_url.rstrip("/")
        return str(request.base_url).rstrip("/")


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _BodyLimit:
    """Refuses request bodies over `limit` bytes (413) before the app reads them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await _plain(413, "request body too large")(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413, "request body too large")
            return message

        await self.app(scope, limited, send)


class _Headers:
    """Adds the security headers to every answer, and no-store to pages."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                for name, value in security.SECURITY_HEADERS.items():
                    if name.lower().encode() not in names:
                        headers.append((name.encode(), value.encode()))
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def _plain(status: int, reason: str) -> Response:
    return Response(reason + "\n", status_code=status, media_type="text/plain; charset=utf-8")


def create_app(backend: WebBackend, options: WebOptions, *, clock: Clock = _utc_now) -> Starlette:
    """The Starlette app serving `backend`'s use cases under `options`' security.

    Raises nothing; a non-loopback host without a password is refused by `check_options`.
    """
    webhook_limit = security.RateLimiter(options.webhook_per_minute, timedelta(minutes=1), clock)
    webhook_total = security.RateLimiter(
        options.webhook_per_minute * 5, timedelta(minutes=1), clock
    )
    login_limit = security.RateLimiter(options.login_per_minute, timedelta(minutes=1), clock)

    # --- helpers ----------------------------------------------------------------------

    def is_operator(request: Request) -> bool:
        return not options.login_required or request.session.get("user") == security.OPERATOR

    def nav(request: Request) -> dict[str, Any]:
        links = [{"url": f"/a/{quote(a)}", "text": a} for a in backend.athletes()]
        links.append({"url": "/sources", "text": "Sources"})
        return {
            "home": "/",
            "links": links,
            "logout": "/logout" if options.login_required else None,
        }

    def page(
        request: Request,
        template: str,
        context: Mapping[str, Any],
        *,
        status: int = 200,
        operator: bool = True,
    ) -> HTMLResponse:
        full = {"csrf": security.csrf_token(request), "nav": nav(request) if operator else None}
        full.update(context)
        return HTMLResponse(render(template, full), status_code=status)

    def message(
        request: Request, status: int, title: str, text: str, operator: bool = False
    ) -> HTMLResponse:
        return page(
            request,
            "message.html",
            {"title": title, "text": text},
            status=status,
            operator=operator and is_operator(request),
        )

    def operator_only(handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            if not is_operator(request):
                if request.method == "GET":
                    target = "/login?" + urlencode({"next": request.url.path})
                    return RedirectResponse(target, status_code=303)
                raise HTTPException(401, "log in first")
            return await handler(request)

        return guarded

    async def form_with_csrf(request: Request) -> Any:
        form = await request.form(max_files=1, max_fields=20)
        if not security.csrf_ok(request, form.get("csrf")):
            raise HTTPException(403, "the form expired or did not come from this site: reload it")
        return form

    def athlete_or_404(name: str) -> str:
        if name not in backend.athletes():
            raise HTTPException(404, "no such athlete")
        return name

    def share_athlete(token: str) -> str:
        athlete = backend.athlete_of_share(token) if 16 <= len(token) <= 100 else None
        if athlete is None:
            raise HTTPException(404, "this link does not exist or was revoked")
        return athlete

    def svg(data: bytes) -> Response:
        return Response(
            data,
            media_type="image/svg+xml",
            headers={"Cache-Control": "private, max-age=60"},
        )

    # --- dashboard, run, charts (operator and share link alike) -------------------------

    def dashboard_response(request: Request, athlete: str, base: str, operator: bool) -> Response:
        d = backend.dashboard(athlete)
        charts = {"shares": f"{base}/charts/shares.svg", "weekly": f"{base}/charts/weekly.svg"}
        links = {"run": lambda run_id: f"{base}/runs/{run_id}"}
        extra = {"share": f"/a/{quote(athlete)}/share"} if operator else None
        return page(
            request,
            "dashboard.html",
            {"d": d, "charts": charts, "links": links, "operator_links": extra},
            operator=operator,
        )

    def chart_response(athlete: str, name: str) -> Response:
        d = backend.dashboard(athlete)
        if name == "shares.svg":
            return svg(share_chart(d.shares, d.report.goal))
        if name == "weekly.svg":
            return svg(weekly_chart(d.weeks))
        raise HTTPException(404, "no such chart")

    def run_id_of(request: Request) -> int:
        raw = request.path_params["run_id"]
        if not raw.isdigit() or len(raw) > 12:
            raise HTTPException(404, "no such run")
        return int(raw)

    def run_response(
        request: Request, athlete: str, run_id: int, base: str, operator: bool
    ) -> Response:
        run = backend.run_page(athlete, run_id)
        if run is None:
            raise HTTPException(404, "no such run")
        profile = f"{base}/runs/{run_id}/profile.svg" if len(run.terrain) else None
        return page(
            request,
            "run.html",
            {"run": run, "profile": profile, "back": base},
            operator=operator,
        )

    def profile_response(athlete: str, run_id: int) -> Response:
        run = backend.run_page(athlete, run_id)
        if run is None or not len(run.terrain):
            raise HTTPException(404, "this run has no stored profile")
        return svg(profile_chart(run.edges_m, run.altitude_m, run.terrain))

    async def home(request: Request) -> Response:
        athletes = backend.athletes()
        if len(athletes) == 1:
            return RedirectResponse(f"/a/{quote(athletes[0])}", status_code=303)
        return page(request, "athletes.html", {"athletes": athletes})

    async def athlete_page(request: Request) -> Response:
        athlete = athlete_or_404(request.path_params["athlete"])
        return dashboard_response(request, athlete, f"/a/{quote(athlete)}", True)

    async def athlete_chart(request: Request) -> Response:
        return chart_response(
            athlete_or_404(request.path_params["athlete"]), request.path_params["name"]
        )

    async def athlete_run(request: Request) -> Response:
        athlete = athlete_or_404(request.path_params["athlete"])
        return run_response(request, athlete, run_id_of(request), f"/a/{quote(athlete)}", True)

    async def athlete_profile(request: Request) -> Response:
        athlete = athlete_or_404(request.path_params["athlete"])
        return profile_response(athlete, run_id_of(request))

    async def shared_page(request: Request) -> Response:
        token = request.path_params["token"]
        athlete = share_athlete(token)
        return dashboard_response(request, athlete, f"/s/{token}", False)

    async def shared_chart(request: Request) -> Response:
        athlete = share_athlete(request.path_params["token"])
        return chart_response(athlete, request.path_params["name"])

    async def shared_run(request: Request) -> Response:
        token = request.path_params["token"]
        athlete = share_athlete(token)
        return run_response(request, athlete, run_id_of(request), f"/s/{token}", False)

    async def shared_profile(request: Request) -> Response:
        athlete = share_athlete(request.path_params["token"])
        return profile_response(athlete, run_id_of(request))

    # --- share links --------------------------------------------------------------------

    async def share_page(request: Request) -> Response:
        athlete = athlete_or_404(request.path_params["athlete"])
        new_token = request.session.pop("new_share", None)
        new_url = f"{options.base_url(request)}/s/{new_token}" if new_token else None
        return page(
            request,
            "share.html",
            {"athlete": athlete, "links_list": backend.share_links(athlete), "new_url": new_url},
        )

    async def share_create(request: Request) -> Response:
        athlete = athlete_or_404(request.path_params["athlete"])
        await form_with_csrf(request)
        # Shown once, on the next page view; the store keeps only its hash.
        request.session["new_share"] = backend.add_share_link(athlete)
        return RedirectResponse(f"/a/{quote(athlete)}/share", status_code=303)

    async def share_revoke(request: Request) -> Response:
        athlete = athlete_or_404(request.path_params["athlete"])
        form = await form_with_csrf(request)
        raw = str(form.get("link", ""))
        if not raw.isdigit() or not backend.revoke_share_link(athlete, int(raw)):
            raise HTTPException(404, "no such link")
        return RedirectResponse(f"/a/{quote(athlete)}/share", status_code=303)

    # --- sources, connect, disconnect ----------------------------------------------------

    async def sources_page(request: Request) -> Response:
        notices = request.session.pop("notices", [])
        return page(
            request,
            "sources.html",
            {
                "sources": backend.sources(),
                "athletes": backend.athletes(),
                "notices": notices,
                "webhook": bool(options.webhook_verify_token),
            },
        )

    def notice(request: Request, kind: str, text: str) -> None:
        notes = list(request.session.get("notices", []))
        notes.append({"kind": kind, "text": text})
        request.session["notices"] = notes[-5:]

    async def disconnect(request: Request) -> Response:
        form = await form_with_csrf(request)
        athlete = athlete_or_404(str(form.get("athlete", "")))
        kind = str(form.get("kind", ""))
        if kind not in ("strava", "garmin"):
            raise HTTPException(400, "kind must be strava or garmin")
        try:
            notice(request, "good", backend.disconnect(athlete, kind))
        except HillsyncError as exc:
            notice(request, "bad", str(exc))
        return RedirectResponse("/sources", status_code=303)

    async def connect_strava(request: Request) -> Response:
        form = await form_with_csrf(request)
        athlete = athlete_or_404(str(form.get("athlete", "")))
        redirect_uri = f"{options.base_url(request)}/connect/strava/callback"
        try:
            url, state = backend.strava_authorize_url(athlete, redirect_uri)
        except HillsyncError as exc:
            notice(request, "bad", str(exc))
            return RedirectResponse("/sources", status_code=303)
        # The answer must come back to this browser session, and soon.
        request.session["strava_connect"] = {
            "state": state,
            "athlete": athlete,
            "until": (clock() + CONNECT_TTL).isoformat(),
        }
        return RedirectResponse(url, status_code=303)

    async def strava_callback(request: Request) -> Response:
        params = request.query_params
        pending = request.session.pop("strava_connect", None)
        if not isinstance(pending, dict) or not isinstance(pending.get("state"), str):
            return message(
                request,
                400,
                "Not connected",
                "No Strava connection was started here: start again.",
                True,
            )
        if not hmac.compare_digest(str(params.get("state", "")), pending["state"]):
            return message(
                request,
                400,
                "Not connected",
                "The answer did not match this request (state mismatch): refused. Start again.",
                True,
            )
        if datetime.fromisoformat(str(pending["until"])) < clock():
            return message(
                request, 400, "Not connected", "This request expired: start again.", True
            )
        if params.get("error"):
            return message(
                request,
                200,
                "Not connected",
                "Strava says access was not granted: nothing was connected.",
                True,
            )
        code = params.get("code", "")
        if not code or len(code) > 200:
            return message(request, 400, "Not connected", "Strava sent no code: start again.", True)
        try:
            # The granted scope is checked and the code exchanged by the connect flow itself.
            result = backend.strava_finish(str(pending["athlete"]), str(request.url))
        except HillsyncError as exc:
            return message(request, 200, "Not connected", str(exc), True)
        return message(
            request, 200, "Connected" if result.ok else "Not connected", result.message, True
        )

    async def garmin_form(request: Request) -> Response:
        athletes = backend.athletes()
        athlete = request.query_params.get("athlete") or athletes[0]
        athlete_or_404(athlete)
        return page(request, "garmin.html", {"athlete": athlete, "mfa": False})

    async def garmin_login(request: Request) -> Response:
        form = await form_with_csrf(request)
        athlete = athlete_or_404(str(form.get("athlete", "")))
        email, password = str(form.get("email", "")), str(form.get("password", ""))
        if not email or not password:
            raise HTTPException(400, "e-mail and password are both needed")
        result = backend.garmin_login(athlete, email, password)
        if result.pending_mfa:
            request.session["garmin_mfa"] = {"athlete": athlete, "state": result.pending_mfa}
            return page(request, "garmin.html", {"athlete": athlete, "mfa": True})
        return message(
            request, 200, "Connected" if result.ok else "Not connected", result.message, True
        )

    async def garmin_mfa(request: Request) -> Response:
        form = await form_with_csrf(request)
        pending = request.session.get("garmin_mfa")
        if not isinstance(pending, dict):
            raise HTTPException(400, "no Garmin login is waiting for a code: start again")
        code = str(form.get("code", "")).strip()
        if not code.isdigit() or len(code) > 10:
            raise HTTPException(400, "the MFA code is the digits Garmin sent")
        result = backend.garmin_mfa(str(pending["athlete"]), str(pending["state"]), code)
        if result.ok:
            request.session.pop("garmin_mfa", None)
        return message(
            request, 200, "Connected" if result.ok else "Not connected", result.message, True
        )

    async def garmin_tokens(request: Request) -> Response:
        form = await form_with_csrf(request)
        athlete = athlete_or_404(str(form.get("athlete", "")))
        upload = form.get("tokens")
        if not isinstance(upload, UploadFile):
            raise HTTPException(400, "choose a garminconnect token file")
        data = await upload.read(MAX_BODY + 1)
        if len(data) > MAX_BODY:
            raise HTTPException(413, "that file is too large for a token file")
        result = backend.garmin_tokens(athlete, data)
        return message(
            request, 200, "Connected" if result.ok else "Not connected", result.message, True
        )

    # --- login ----------------------------------------------------------------------------

    async def login_form(request: Request) -> Response:
        if not options.login_required:
            return RedirectResponse("/", status_code=303)
        return page(
            request,
            "login.html",
            {"next": _safe_next(request.query_params.get("next"))},
            operator=False,
        )

    async def login(request: Request) -> Response:
        if not options.login_required or options.password is None:
            return RedirectResponse("/", status_code=303)
        if not login_limit.allow(_client(request)):
            raise HTTPException(429, "too many attempts: wait a minute")
        form = await form_with_csrf(request)
        target = _safe_next(str(form.get("next", "")))
        if not security.password_matches(options.password, str(form.get("password", ""))):
            log.warning("web_login_refused", client=_client(request))
            return page(
                request,
                "login.html",
                {"next": target, "notices": [{"kind": "bad", "text": "Wrong password."}]},
                status=403,
                operator=False,
            )
        request.session.clear()
        request.session["user"] = security.OPERATOR
        security.csrf_token(request)
        return RedirectResponse(target, status_code=303)

    async def logout(request: Request) -> Response:
        await form_with_csrf(request)
        request.session.clear()
        return RedirectResponse("/login" if options.login_required else "/", status_code=303)

    # --- Strava push subscription ---------------------------------------------------------

    async def webhook_validate(request: Request) -> Response:
        if not _webhook_allowed(request):
            return JSONResponse({"error": "rate limited"}, status_code=429)
        if options.webhook_verify_token is None:
            return JSONResponse({"error": "push subscription not configured"}, status_code=404)
        try:
            answer = validation_answer(request.query_params, options.webhook_verify_token)
        except WebhookError as exc:
            return JSONResponse({"error": exc.reason}, status_code=exc.status)
        return JSONResponse(answer)

    def _webhook_allowed(request: Request) -> bool:
        return webhook_limit.allow(_client(request)) and webhook_total.allow("*")

    async def webhook_event(request: Request) -> Response:
        if not _webhook_allowed(request):
            return JSONResponse({"error": "rate limited"}, status_code=429)
        if options.webhook_verify_token is None:
            return JSONResponse({"error": "push subscription not configured"}, status_code=404)
        body = await request.body()
        if len(body) > MAX_WEBHOOK_BODY:
            return JSONResponse({"error": "event too large"}, status_code=413)
        try:
            event = parse_event(body)
        except WebhookError as exc:
            return JSONResponse({"error": exc.reason}, status_code=exc.status)
        # Strava wants its answer within 2 s: the work happens after the answer is sent.
        return JSONResponse({"ok": True}, background=BackgroundTask(handle_event, event))

    def handle_event(event: StravaEvent) -> None:
        try:
            done = backend.strava_event(event)
        except HillsyncError as exc:
            log.warning(
                "strava_event_failed", owner_id=event.owner_id, aspect=event.aspect_type,
                error=str(exc),
            )  # fmt: skip
            return
        except Exception:  # fault boundary: the answer is sent; logged with its traceback
            log.exception("strava_event_crashed", owner_id=event.owner_id)
            return
        log.info(
            "strava_event", object_type=event.object_type, aspect=event.aspect_type,
            owner_id=event.owner_id, object_id=event.object_id, done=done,
        )  # fmt: skip

    # --- static, errors -------------------------------------------------------------------

    async def style(request: Request) -> Response:
        return Response(
            stylesheet(),
            media_type="text/css",
            headers={"Cache-Control": "public, max-age=3600"},
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        reason = exc.detail if isinstance(exc.detail, str) else "bad request"
        if request.url.path.startswith("/strava/"):
            return JSONResponse({"error": reason}, status_code=exc.status_code)
        try:
            return message(request, exc.status_code, "Sorry", reason, True)
        except Exception:  # noqa: BLE001 - fault boundary: an error page must never fail
            return _plain(exc.status_code, reason)

    async def store_error(request: Request, exc: Exception) -> Response:
        log.error("web_store_error", path=request.url.path, error=str(exc))
        return _plain(503, "the database is not available right now: try again shortly")

    async def server_error(request: Request, exc: Exception) -> Response:
        # The traceback goes to the log, never to the browser.
        log.error("web_unexpected_error", path=request.url.path, exc_info=exc)
        return _plain(500, "something went wrong on the server (see its log)")

    routes = [
        Route("/", home),
        Route("/static/style.css", style),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/a/{athlete}", operator_only(athlete_page)),
        Route("/a/{athlete}/charts/{name}", operator_only(athlete_chart)),
        Route("/a/{athlete}/runs/{run_id}", operator_only(athlete_run)),
        Route("/a/{athlete}/runs/{run_id}/profile.svg", operator_only(athlete_profile)),
        Route("/a/{athlete}/share", operator_only(share_page), methods=["GET"]),
        Route("/a/{athlete}/share", operator_only(share_create), methods=["POST"]),
        Route("/a/{athlete}/share/revoke", operator_only(share_revoke), methods=["POST"]),
        Route("/s/{token}", shared_page),
        Route("/s/{token}/charts/{name}", shared_chart),
        Route("/s/{token}/runs/{run_id}", shared_run),
        Route("/s/{token}/runs/{run_id}/profile.svg", shared_profile),
        Route("/sources", operator_only(sources_page)),
        Route("/disconnect", operator_only(disconnect), methods=["POST"]),
        Route("/connect/strava", operator_only(connect_strava), methods=["POST"]),
        Route("/connect/strava/callback", operator_only(strava_callback), methods=["GET"]),
        Route("/connect/garmin", operator_only(garmin_form), methods=["GET"]),
        Route("/connect/garmin", operator_only(garmin_login), methods=["POST"]),
        Route("/connect/garmin/mfa", operator_only(garmin_mfa), methods=["POST"]),
        Route("/connect/garmin/tokens", operator_only(garmin_tokens), methods=["POST"]),
        Route("/strava/webhook", webhook_validate, methods=["GET"]),
        Route("/strava/webhook", webhook_event, methods=["POST"]),
    ]
    https = bool(options.public_url and options.public_url.startswith("https://"))
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(_Headers),
            Middleware(_BodyLimit, limit=MAX_BODY),
            Middleware(
                SessionMiddleware,
                secret_key=security.session_key(options.password),
                session_cookie=security.SESSION_COOKIE,
                max_age=security.SESSION_MAX_AGE_S,
                same_site="lax",
                https_only=https,
            ),
        ],
        exception_handlers={
            HTTPException: http_error,
            StoreError: store_error,
            Exception: server_error,
        },
    )
    return app


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _safe_next(target: str | None) -> str:
    """Only a local path is a place to go after login (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def dump_json(value: object) -> str:
    """Compact JSON (used by tests and the webhook command)."""
    return json.dumps(value, separators=(",", ":"))
