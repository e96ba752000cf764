"""hillsync serve in a real headless Chromium (Debian's chromium and chromedriver).

Skipped cleanly where no browser is installed; CI installs one.
"""

from __future__ import annotations

import re

import pytest

from hillsync.model import Secret
from hillsync.web.app import WebOptions, create_app
from web.browser import chromium, console_errors, running
from web.websupport import PASSWORD, PUBLIC, Site

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
