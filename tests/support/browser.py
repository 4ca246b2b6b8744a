"""Real headless Chromium through Selenium (Debian's chromium and chromium-driver), with screenshots."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
T = TypeVar("T")
HOW_TO = "Install Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver; .ci/run does)."


def _binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(f"{names[0]} is not installed. {HOW_TO}", pytrace=False)


class Browser:
    """One headless Chromium window; `shot(name)` saves a screenshot under test-artifacts/."""

    def __init__(self, driver: webdriver.Chrome, folder: Path) -> None:
        self.driver = driver
        self.folder = folder
        self.shots: list[Path] = []

    def open(self, url: str) -> None:
        self.driver.get(url)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[WebElement]:
        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def text(self, css: str = "main") -> str:
        return str(self.find(css).text)

    def click(self, css: str) -> None:
        self.find(css).click()

    def wait(self, condition: Callable[[], T], what: str, timeout: float = 30) -> T:
        try:
            # A page replaced mid-check (a redirect, the script's reload) leaves stale elements: look again.
            ignored = (NoSuchElementException, StaleElementReferenceException)
            wait = WebDriverWait(self.driver, timeout, poll_frequency=0.1, ignored_exceptions=ignored)
            return wait.until(lambda _d: condition())
        except Exception as exc:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}") from exc

    def wait_text(self, css: str, fragment: str, timeout: float = 30) -> None:
        self.wait(lambda: any(fragment in e.text for e in self.all(css)), f"{fragment!r} in {css}", timeout)

    def shot(self, name: str) -> Path:
        path = self.folder / f"{len(self.shots) + 1:02d}-{name}.png"
        self.driver.save_screenshot(str(path))
        self.shots.append(path)
        return path

    def page_figures(self) -> dict[str, Any]:
        """This page's weight (bytes over the wire, requests) and its first paint, from the Performance API."""
        figures: dict[str, Any] = self.driver.execute_script(
            """
            const nav = performance.getEntriesByType('navigation')[0];
            const res = performance.getEntriesByType('resource');
            const paint = performance.getEntriesByType('paint').find(p => p.name === 'first-contentful-paint');
            return {
              url: location.pathname,
              requests: 1 + res.length,
              transfer_bytes: nav.transferSize + res.reduce((n, r) => n + r.transferSize, 0),
              body_bytes: nav.decodedBodySize + res.reduce((n, r) => n + r.decodedBodySize, 0),
              first_contentful_paint_ms: paint ? Math.round(paint.startTime) : null,
              dom_content_loaded_ms: Math.round(nav.domContentLoadedEventEnd),
            };
            """
        )
        return figures


@contextmanager
def chromium(test_name: str, width: int = 1280, height: int = 900, *, javascript: bool = True) -> Iterator[Browser]:
    """Headless Chromium; on a failure inside the block, a screenshot named FAILED-... is saved first."""
    folder = ARTIFACTS / test_name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    options = webdriver.ChromeOptions()
    options.binary_location = _binary("chromium", "chromium-browser")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={width},{height}")
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(options=options, service=Service(_binary("chromedriver")))
    browser = Browser(driver, folder)
    try:
        yield browser
    except BaseException:
        with contextlib.suppress(Exception):
            driver.save_screenshot(str(folder / "FAILED-last-page.png"))
            (folder / "FAILED-last-page.html").write_text(driver.page_source)
        raise
    finally:
        logs = driver.get_log("browser") if hasattr(driver, "get_log") else []
        (folder / "console.json").write_text(json.dumps(logs, indent=1))
        driver.quit()
