"""The local Customer.io's HTML page (GET /), rendered by a real headless Chromium.

Debian's `chromium` package (listed in .ci/apt-packages.txt, installed by .ci/run). Without it the test is
skipped, unless ANALYTICS_CIO_REQUIRE_BROWSER=1 (as in CI) makes that a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from analytics_cio import Client
from analytics_cio.testing import LocalCustomerIO

from .conftest import API_KEY, SITE_ID

INJECTED = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("ANALYTICS_CIO_REQUIRE_BROWSER") == "1":
        pytest.fail("chromium is not installed (apt-get install -y chromium)")
    pytest.skip("chromium is not installed (apt-get install -y chromium)")


@pytest.fixture
def cio() -> Iterator[LocalCustomerIO]:
    with LocalCustomerIO(site_id=SITE_ID, api_key=API_KEY) as server:
        yield server


def browse(chromium: str, profile: Path, url: str, *options: str) -> str:
    """Chromium's DOM after loading ``url`` (or whatever the options make it do), as its stdout."""
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", *options, url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


class Page(HTMLParser):
    """The rendered DOM: its visible text, its title, and the tags it holds."""

    def __init__(self, dom: str) -> None:
        super().__init__()
        self.text: list[str] = []
        self.title = ""
        self.tags: list[str] = []
        self._in: list[str] = []
        self.feed(dom)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._in.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._in:
            while self._in and self._in.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        if self._in and self._in[-1] == "title":
            self.title += data
        elif not self._in or self._in[-1] != "style":
            self.text.append(data)

    @property
    def visible(self) -> str:
        return " ".join(" ".join(self.text).split())


def populate(server: LocalCustomerIO) -> None:
    client = Client(SITE_ID, API_KEY, host=server.url, sync_mode=True)
    client.page(anonymous_id="anon-5b1e", name="Pricing")
    client.identify("user-42", {"email": "ada@example.com", "plan": "pro", "note": INJECTED},
                    anonymous_id="anon-5b1e")
    client.track("user-42", "Order Completed", {"total": 49})
    client.register_device("user-42", "ios-token-7f3a9c", "ios", {"push_enabled": "true"})
    client.group("user-42", "acme", {"name": "Acme Ltd", "relationship_attributes": {"role": "admin"}})
    client.identify("legacy-7", {"newsletter": True})
    client.alias("legacy-7", "user-42")
    client.shutdown()


def test_the_page_shows_people_activity_devices_objects_and_merges(chromium: str, cio: LocalCustomerIO,
                                                                   tmp_path: Path) -> None:
    populate(cio)
    page = Page(browse(chromium, tmp_path / "profile", cio.url + "/", "--dump-dom"))
    text = page.visible

    assert "id user-42 · email ada@example.com" in text
    assert "plan pro" in text and "newsletter true" in text  # merged in from legacy-7
    assert "Order Completed" in text and "Pricing" in text  # the anonymous page view, linked on identify
    assert "Device Created or Updated" in text
    assert "ios-token-7f3a9c ios" in text
    assert "Acme Ltd" in text and '{"role": "admin"}' in text
    assert "legacy-7" in text
    # Times are UTC dates (the Unix seconds on hover), and the page view made before sign-up is marked.
    assert re.search(r"Pricing while anonymous \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text), text
    assert "time" in page.tags and re.search(r"ios-token-7f3a9c ios \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text)
    # What people send is shown as text, never run: the injected markup is on the page, inert.
    assert INJECTED in text
    assert "script" not in page.tags and "img" not in page.tags
    assert page.title == "Local Customer.io"  # the script did not run


def test_an_empty_workspace_renders_and_the_screenshot_is_drawn(chromium: str, cio: LocalCustomerIO,
                                                                tmp_path: Path) -> None:
    page = Page(browse(chromium, tmp_path / "profile", cio.url + "/", "--dump-dom"))
    assert "0 people" in page.visible
    assert "People none" in page.visible

    screenshot = tmp_path / "page.png"
    browse(chromium, tmp_path / "profile", cio.url + "/", f"--screenshot={screenshot}", "--window-size=1024,768",
           "--hide-scrollbars")
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1024, 768)
    assert len(data) > 5000  # text and boxes, not a blank image
