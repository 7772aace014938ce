"""The console in a real browser (Debian's headless ``chromium``) against a running
``feedstack serve`` under live traffic: every chart has data points and the page logs no error;
the data endpoints need an admin key; /docs and the console load nothing from a CDN."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import httpx
import pytest

from feedstack.bench.console_shot import (
    CHARTS,
    LiveConsole,
    chromium_path,
    console_server,
    console_status,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveConsole]:
    with console_server(tmp_path_factory.mktemp("console")) as running:
        yield running


def test_every_chart_has_points_and_the_page_logs_no_error(live: LiveConsole) -> None:
    if chromium_path() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (tools/debian-packages installs it)")
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    status = console_status(live.console_url)
    assert status["errors"] == [] and status["log_errors"] == []
    assert status["polls"] >= 1 and status["state_polls"] >= 1
    assert set(status["charts"]) == set(CHARTS)
    empty = [c for c in CHARTS if status["charts"][c] < 1]
    assert not empty, f"charts without data points: {empty} ({status})"


def test_console_data_needs_an_admin_key(live: LiveConsole) -> None:
    with httpx.Client(base_url=live.http_url, timeout=10.0) as c:
        assert c.get("/console").status_code == 200  # the page holds no data
        assert c.get("/v1/console/series").status_code == 401
        assert c.get("/v1/console/state", headers={"x-api-key": "nope"}).status_code == 403
        admin = {"x-api-key": live.admin_key}
        state = c.get("/v1/console/state", headers=admin).json()
        assert set(state["serving"]) == {"champion"}
        assert state["lineage"]["champion"]["training_rows_hash"]
        assert state["links"]["docs"] == "/docs"
        series = c.get("/v1/console/series", headers=admin).json()
        assert series["points"] and series["slo"]["p95_ms"] > 0


def test_docs_and_console_load_only_local_assets(live: LiveConsole) -> None:
    with httpx.Client(base_url=live.http_url, timeout=10.0) as c:
        for page in ("/docs", "/console"):
            text = c.get(page).text
            refs = re.findall(r'(?:src|href)="([^"]+)"', text)
            assert refs and not [r for r in refs if re.match(r"(https?:)?//", r)], (page, refs)
            for ref in refs:
                if ref.startswith("/static/"):
                    assert c.get(ref).status_code == 200, ref
