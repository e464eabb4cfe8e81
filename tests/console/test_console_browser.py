"""The console in a real browser: Debian's headless chromium driven by Playwright."""

from __future__ import annotations

import re
import shutil

import pytest
from console_helpers import PASSWORD
from playwright import sync_api

# Debian's chromium (tests/testbed/setup-host.sh); Playwright downloads no browser here.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


def test_deploy_from_the_browser_and_watch_it_live(site, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1100, "height": 700})
    expect = sync_api.expect
    page.goto(site.url + "/deploy")
    expect(page).to_have_url(re.compile(r"/login\?next=/deploy$"))
    page.fill("#name", "alice")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(site.url + "/deploy")

    page.select_option("#environment", "paced")
    page.fill("#branch", "feature/browser")
    page.check("input[name=skip_migrations]")
    page.fill("#description", "deployed from the browser test")
    page.click("#deploy-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/runs/\d+$"))
    run_id = int(page.url.rsplit("/", 1)[1])
    # Lines that come in from now on arrive through the event stream: the page is never
    # reloaded (the marker survives) and they were not in the page the server rendered.
    page.evaluate("window.sameDocument = true")
    first_render = page.locator("#log").text_content()
    assert "console test line 5" not in first_render

    log = page.locator("#log")
    for number in range(1, 6):
        expect(log).to_contain_text(f"console test line {number}", timeout=60_000)
    expect(page.locator("#run-status")).to_have_text("success", timeout=60_000)
    expect(page.locator("#run-release")).to_have_text(re.compile(r"^r-[0-9a-f]{10}$"))
    assert page.evaluate("window.sameDocument") is True
    text = log.text_content()
    positions = [text.index(f"console test line {n}") for n in range(1, 6)]
    assert positions == sorted(positions) and "PLAY RECAP" in text
    # Scrolled to the newest line.
    assert page.evaluate("(() => { const l = document.getElementById('log');"
                         " return l.scrollHeight - l.scrollTop - l.clientHeight; })()") < 48
    expect(page.locator("#hosts tbody tr td").first).to_have_text("localhost")
    page.screenshot(path=str(tmp_path / "run.png"), full_page=True)

    page.goto(site.url + "/runs?environment=paced")
    row = page.locator(f"#history tr[data-run='{run_id}']")
    expect(row.locator(".status")).to_have_text("success")
    expect(row).to_contain_text("feature/browser")
    expect(row).to_contain_text("deployed from the browser test")
    page.close()


def test_the_progress_bar_advances_live(site, browser):
    page = browser.new_page(viewport={"width": 1100, "height": 700})
    expect = sync_api.expect
    page.goto(site.url + "/login")
    page.fill("#name", "alice")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(site.url + "/runs")
    with site.api("alice") as client:
        started = client.post("/api/v1/deploy/trigger", json={"environment": "phased"})
    assert started.status_code == 201, started.text
    run_id = started.json()["id"]
    page.goto(f"{site.url}/runs/{run_id}")
    # Every state each phase shows, in order, as the page's polling changes them.
    page.evaluate("""() => {
      window.sameDocument = true;
      window.seen = {};
      const note = (item) => {
        const states = window.seen[item.dataset.phase] ||= [];
        if (states[states.length - 1] !== item.dataset.state) states.push(item.dataset.state);
      };
      document.querySelectorAll("#progress li").forEach(note);
      new MutationObserver((changes) => changes.forEach((change) => note(change.target)))
        .observe(document.getElementById("progress"),
                 {subtree: true, attributes: true, attributeFilter: ["data-state"]});
    }""")
    expect(page.locator("#run-status")).to_have_text("success", timeout=90_000)
    for phase in ("lock", "build", "checks", "backup", "migrate", "switch", "health", "cleanup"):
        expect(page.locator(f"#progress li[data-phase={phase}]")).to_have_attribute(
            "data-state", "done", timeout=30_000)
    assert page.evaluate("window.sameDocument") is True
    seen = page.evaluate("window.seen")
    rank = {"pending": 0, "running": 1, "done": 2}
    for states in seen.values():
        assert [rank[state] for state in states] == sorted(rank[state] for state in states), seen
    # The page was loaded before the end: the last phase was seen before it was done.
    assert len(seen["cleanup"]) > 1, seen
    page.close()


def test_the_environment_page_draws_its_deploy_charts(site, browser):
    with site.api("alice") as client:
        started = client.post("/api/v1/deploy/trigger", json={"environment": "staging"})
    site.wait_for(started.json()["id"])
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    expect = sync_api.expect
    page.goto(site.url + "/login?next=/environments/staging")
    page.fill("#name", "alice")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(site.url + "/environments/staging")
    for chart in ("frequency", "duration", "failure-rate", "time-to-restore"):
        svg = page.locator(f"svg#chart-{chart}")
        expect(svg).to_be_visible()
        expect(svg.locator("rect.bar")).to_have_count(12)
        box = svg.bounding_box()
        assert box["width"] > 200 and box["height"] > 30
    # This week's bar of deploys is drawn with a height.
    assert page.locator("svg#chart-frequency rect.bar").last.bounding_box()["height"] > 10
    expect(page.locator("#history form.rollback-to button").first).to_have_text(
        "Roll back to this")
    page.close()
