"""The Dagster UI after a demo run, in headless Chromium: the example assets, their cost metadata and
the daily cost report's chart are visible. Debian's chromium, driven by Playwright (no browser download).
Screenshots are kept in tests/artifacts/."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests import services

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("bubblewrap")]  # the demo sandboxes code
BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
TODAY = datetime.now(UTC).date().isoformat()
IN_PROCESS = '{"execution": {"config": {"in_process": {}}}}'


def run(*cmd: str, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, f"{' '.join(cmd[:4])} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture
def demo_env(tmp_path: Path) -> dict[str, str]:
    """A demo run, the triage agent for today and today's cost report, all on the embedded default."""
    home = Path(os.environ["WFLO_HOME"])
    env = {**os.environ, "DAGSTER_HOME": str(home / "dagster"), "COLUMNS": "160"}
    run(str(BIN / "wflo"), "demo", env=env)
    for selection in ("group:triage_agent", "daily_cost_report"):
        run(
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "wflo_dagster.definitions",
            "--select",
            selection,
            "--partition",
            TODAY,
            "--config-json",
            IN_PROCESS,
            env=env,
        )
    return env


@pytest.fixture
def webserver(demo_env: dict[str, str]) -> Iterator[str]:
    """dagster-webserver on a free loopback port, in its own process group so all of it is stopped."""
    port = services.free_port()
    log = open(Path(demo_env["DAGSTER_HOME"]) / "webserver.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            str(BIN / "dagster-webserver"),
            "-m",
            "wflo_dagster.definitions",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=demo_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, f"dagster-webserver exited: {Path(log.name).read_text()[-2000:]}"
            try:
                if urllib.request.urlopen(url + "/server_info", timeout=2).status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "dagster-webserver did not answer within 180 s"
            time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        try:  # the code server child may outlive the webserver's graceful exit
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=15)
        log.close()


@pytest.fixture(scope="module")
def chromium_path() -> str:
    if not CHROMIUM.exists():
        services.apt_install("chromium")
    return str(CHROMIUM)


def test_ui_shows_example_assets_and_their_costs(webserver: str, chromium_path: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(webserver + "/assets", wait_until="networkidle", timeout=120_000)
            skip = page.get_by_role("button", name="Skip")  # Dagster's one-time community dialog
            skip.click(timeout=30_000)
            for asset in (
                "research_plan",
                "source_notes",
                "analysis_code",
                "research_summary",
                "triage_inbox",
                "ticket_triage",
                "triage_digest",
                "daily_cost_report",
            ):
                expect(page.get_by_text(asset, exact=True).first).to_be_visible(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "ui-asset-catalog.png"), full_page=True)

            for asset, calls in (("research_summary", "1"), ("ticket_triage", "6")):
                page.goto(f"{webserver}/assets/{asset}", wait_until="networkidle", timeout=120_000)
                expect(page.get_by_text("wflo/cost_usd", exact=True).first).to_be_visible(timeout=60_000)
                row = page.locator("tr", has=page.get_by_text("wflo/llm_calls", exact=True)).first
                expect(row).to_contain_text(calls)
                page.screenshot(path=str(ARTIFACTS / f"ui-{asset}.png"), full_page=True)

            page.goto(
                f"{webserver}/assets/daily_cost_report?view=events", wait_until="networkidle", timeout=120_000
            )
            expect(page.get_by_text("research_agent_job").first).to_be_visible(timeout=60_000)
            page.get_by_text("[Show Markdown]").first.click()
            chart = page.locator("img[alt='LLM cost by model']")
            expect(chart).to_be_visible(timeout=30_000)
            assert chart.evaluate("img => img.complete && img.naturalWidth") > 0
            page.screenshot(path=str(ARTIFACTS / "ui-daily-cost-report.png"))
        finally:
            browser.close()
