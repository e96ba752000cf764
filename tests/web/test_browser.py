"""hillsync serve in a real headless Chromium (Debian's chromium and chromedriver).

Skipped cleanly where no browser is installed; CI installs one.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import responses

from hillsync.model import Secret
from hillsync.web.app import WebOptions, create_app
from web.browser import chromium, console_errors, running
from web.websupport import PASSWORD, PUBLIC, STRAVA_APP, Site

pytestmark = pytest.mark.timeout(180)


def app_of(site: Site, **options: object) -> object:
    return create_app(site.backend, WebOptions(**options), clock=lambda: site.clock_now)  # type: ignore[arg-type]


class TestDashboardInBrowser:
    """The dashboard renders with its charts, on a desktop and on a phone, without errors."""

    @pytest.mark.parametrize(("width", "height", "phone"), [(1200, 1600, False), (390, 844, True)])
    def test_dashboard_renders(self, site: Site, width: int, height: int, phone: bool) -> None:
        """Both charts load as images of real size and the console stays clean."""
        from selenium.webdriver.common.by import By

        with running(app_of(site)) as url, chromium(width, height, phone=phone) as driver:
            driver.get(f"{url}/a/me")
            assert driver.execute_script("return window.innerWidth") == width
            assert "hill balance" in driver.find_element(By.TAG_NAME, "h1").text
            for chart in ("shares-chart", "weekly-chart"):
                img = driver.find_element(By.CSS_SELECTOR, f"#{chart} img")
                natural = driver.execute_script(
                    "return [arguments[0].complete, arguments[0].naturalWidth,"
                    " arguments[0].getBoundingClientRect().width]",
                    img,
                )
                assert natural[0] is True
                assert natural[1] > 300  # the SVG loaded and has its size
                assert natural[2] <= width  # never wider than the screen
            page_width = driver.execute_script("return document.documentElement.scrollWidth")
            assert page_width <= width + 1, "the page scrolls sideways"
            assert driver.find_element(By.ID, "runs").is_displayed()
            assert console_errors(driver) == []

    def test_run_page_renders_its_profile(self, site: Site) -> None:
        """A run page's profile chart loads."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        run_id = site.run_ids()[-2]
        with running(app_of(site)) as url, chromium() as driver:
            driver.get(f"{url}/a/me")
            driver.find_element(By.CSS_SELECTOR, f'a[href="/a/me/runs/{run_id}"]').click()
            WebDriverWait(driver, 20).until(lambda d: d.current_url.endswith(f"/runs/{run_id}"))
            img = driver.find_element(By.CSS_SELECTOR, "#profile-chart img")
            assert driver.execute_script("return arguments[0].naturalWidth", img) > 300
            assert console_errors(driver) == []


class TestLoginInBrowser:
    """On a public address the browser is sent to the login, and the password lets it in."""

    def test_login(self, site: Site) -> None:
        """Wrong password: refused; right password: the page asked for opens."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        app = app_of(site, host=PUBLIC, password=Secret(PASSWORD))
        with running(app) as url, chromium() as driver:
            driver.get(f"{url}/sources")
            assert driver.current_url.startswith(f"{url}/login")
            driver.find_element(By.ID, "password").send_keys("wrong")
            driver.find_element(By.CSS_SELECTOR, "#login button").click()
            WebDriverWait(driver, 20).until(lambda d: "Wrong password" in d.page_source)
            driver.find_element(By.ID, "password").send_keys(PASSWORD)
            driver.find_element(By.CSS_SELECTOR, "#login button").click()
            WebDriverWait(driver, 20).until(lambda d: d.current_url == f"{url}/sources")
            assert driver.find_element(By.TAG_NAME, "h1").text == "Sources"
            cookie = driver.get_cookie("hillsync_session")
            assert cookie is not None
            assert cookie["httpOnly"] is True
            assert cookie["sameSite"] == "Lax"
            assert PASSWORD not in driver.page_source
            assert not re.search(r"Traceback", driver.page_source)


class TestStravaConnectInBrowser:
    """Connect Strava is one click: to Strava's page and back, against a mocked Strava."""

    def test_connect(self, tmp_path: Path, synced_db: Path, rsps: responses.RequestsMock) -> None:
        """The browser is sent to Strava's authorize page; coming back connects the athlete."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        site = Site(tmp_path, synced_db, STRAVA_APP)
        rsps.post(
            "https://www.strava.com/oauth/token",
            json={"token_type": "Bearer", "access_token": "strava-access-0001",
                  "refresh_token": "strava-refresh-0001", "expires_at": 1_900_000_000,
                  "athlete": {"id": 5551234, "firstname": "Ann", "lastname": "Runner"}},
        )  # fmt: skip
        try:
            with running(app_of(site)) as url, chromium() as driver:
                driver.get(f"{url}/sources")
                driver.find_element(By.ID, "connect-strava-1").click()
                # Strava's page itself cannot load here (no network): its address is enough.
                WebDriverWait(driver, 20).until(lambda d: "strava.com" in d.current_url)
                query = {k: v[0] for k, v in parse_qs(urlsplit(driver.current_url).query).items()}
                assert query["redirect_uri"] == f"{url}/connect/strava/callback"
                assert "activity:read_all" in query["scope"]
                # What Strava does when the athlete presses Authorize: redirect back.
                back = f"{query['redirect_uri']}?" + urlencode(
                    {"state": query["state"], "code": "the-code", "scope": "read,activity:read_all"}
                )
                driver.get(back)
                driver.get_log("browser")  # drop the failed load of Strava's page
                WebDriverWait(driver, 20).until(
                    lambda d: d.find_element(By.TAG_NAME, "h1").text == "Connected"
                )
                text = driver.find_element(By.ID, "message").text
                assert text == "Strava athlete Ann Runner is connected for me."
                driver.get(f"{url}/sources")
                assert "strava" in driver.find_element(By.ID, "sources").text
                assert console_errors(driver) == []
        finally:
            site.db.close()
