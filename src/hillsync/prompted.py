"""Run a login that asks for codes by callback (Garmin's MFA) across separate web requests.

The login runs in its own thread; when it asks for a code, the request that started it
returns and a later request hands the code in. A login left waiting gives up after
`timeout_s` (the code prompt then answers "" and the login ends with its own error).
"""

from __future__ import annotations

import queue
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class _Login[T]:
    codes: queue.Queue[str] = field(default_factory=queue.Queue)
    asked: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    notes: list[str] = field(default_factory=list)
    result: T | None = None
    error: BaseException | None = None


@dataclass(frozen=True)
class Step[T]:
    """Where a login stands: finished (`result` or `error`), or waiting for a code (`login`)."""

    login: str | None = None
    result: T | None = None
    error: BaseException | None = None
    notes: tuple[str, ...] = ()


class PromptedLogins[T]:
    """Logins in progress, by an unguessable id."""

    def __init__(self, *, timeout_s: float = 300.0, step_s: float = 90.0) -> None:
        self.timeout_s = timeout_s
        self.step_s = step_s
        self._logins: dict[str, _Login[T]] = {}
        self._lock = threading.Lock()

    def start(self, run: Callable[[Callable[[], str], Callable[[str], None]], T]) -> Step[T]:
        """Start `run(ask_code, say)` in a thread; return when it ends or asks for a code."""
        login: _Login[T] = _Login()
        login_id = secrets.token_urlsafe(16)

        def ask() -> str:
            login.asked.set()
            try:
                return login.codes.get(timeout=self.timeout_s)
            except queue.Empty:
                return ""

        def body() -> None:
            try:
                login.result = run(ask, login.notes.append)
            except Exception as exc:  # noqa: BLE001 - fault boundary: handed to the waiting request
                login.error = exc
            finally:
                login.done.set()

        with self._lock:
            self._logins[login_id] = login
        threading.Thread(target=body, name="prompted-login", daemon=True).start()
        return self._step(login_id, login)

    def answer(self, login_id: str, code: str) -> Step[T] | None:
        """Hand the code to the waiting login; None when there is no such login."""
        with self._lock:
            login = self._logins.get(login_id)
        if login is None or login.done.is_set():
            return None
        login.asked.clear()
        login.codes.put(code)
        return self._step(login_id, login)

    def _step(self, login_id: str, login: _Login[T]) -> Step[T]:
        deadline_s = self.step_s
        # Wait for the end or for the next question, whichever comes first.
        waited = 0.0
        while waited < deadline_s:
            if login.done.wait(0.05) or login.asked.is_set():
                break
            waited += 0.05
        notes = tuple(login.notes)
        login.notes.clear()
        if login.done.is_set():
            with self._lock:
                self._logins.pop(login_id, None)
            return Step(result=login.result, error=login.error, notes=notes)
        return Step(login=login_id, notes=notes)
