"""The documentation site (`make docs`, .cache/docs/html) in a real browser: Debian's headless
chromium driven by Playwright. Every module, role and plugin has its page, and the pages show
what the collection's documentation says: options, entry points, return values, versions."""

from __future__ import annotations

import ast
import importlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from playwright import sync_api

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / ".cache" / "docs" / "html"
COLLECTION = SITE / "collections" / "slipway" / "django"
# Debian's chromium (tests/testbed/setup-host.sh); Playwright downloads no browser here.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
expect = sync_api.expect


def _documentation(path: Path) -> dict:
    for node in ast.parse(path.read_text()).body:
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == "DOCUMENTATION"):
            return yaml.safe_load(node.value.value)
    raise AssertionError(f"{path} has no DOCUMENTATION")


def _plugin_names(kind: str, method: str) -> list[str]:
    """The names a filter or test plugin file registers (one file may hold several)."""
    names = []
    for path in sorted((ROOT / "plugins" / kind).glob("*.py")):
        module = importlib.import_module(
            f"ansible_collections.slipway.django.plugins.{kind}.{path.stem}")
        owner = module.FilterModule if kind == "filter" else module.TestModule
        names += list(getattr(owner(), method)())
    return names


def expected_pages() -> list[str]:
    pages = [f"{path.stem}_module.html" for path in (ROOT / "plugins" / "modules").glob("*.py")]
    pages += [f"{path.parents[1].name}_role.html"
              for path in (ROOT / "roles").glob("*/meta/argument_specs.yml")]
    pages += [f"{path.stem}_lookup.html" for path in (ROOT / "plugins" / "lookup").glob("*.py")]
    pages += [f"{path.stem}_callback.html"
              for path in (ROOT / "plugins" / "callback").glob("*.py")]
    pages += [f"{name}_filter.html" for name in _plugin_names("filter", "filters")]
    pages += [f"{name}_test.html" for name in _plugin_names("test", "tests")]
    return sorted(pages)


@pytest.fixture(scope="module")
def site() -> Path:
    """The built site (make test builds it first; built here when it is missing)."""
    if not (COLLECTION / "index.html").is_file():
        subprocess.run(["make", "--no-print-directory", "docs"], cwd=ROOT, check=True)
    return COLLECTION


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    yield page
    page.close()


def test_the_collection_index_links_every_module_role_and_plugin(site, page):
    page.goto((site / "index.html").as_uri())
    expect(page).to_have_title(re.compile(r"Slipway\.Django"))
    links = page.eval_on_selector_all(
        "div[role=main] a.reference.internal",
        "links => links.map(link => link.getAttribute('href').split('#')[0])")
    linked = {Path(link).name for link in links}
    missing = [name for name in expected_pages() if name not in linked]
    assert not missing, f"not linked from the collection's index: {missing}"
    assert len(expected_pages()) >= 25
    # Each page exists and renders the plugin it names.
    for name in expected_pages():
        page.goto((site / name).as_uri())
        plugin, kind = name.removesuffix(".html").rsplit("_", 1)
        expect(page.locator("h1")).to_contain_text(f"slipway.django.{plugin} {kind}")
    # The guide of docs/docsite is part of the site.
    page.goto((site / "index.html").as_uri())
    page.get_by_role("link", name="Running slipway.django from AWX").first.click()
    expect(page.locator("h1")).to_contain_text("AWX or Ansible Automation Platform")
    expect(page.locator("div[role=main]")).to_contain_text("ANSIBLE_CALLBACKS_ENABLED")


def typographic(text: str) -> str:
    """Text as Sphinx renders it (its smart quotes)."""
    return text.replace("'", "\u2019")


def _option(main, anchor: str):
    """An option's or return value's cell: its name, type and the version that added it."""
    return main.locator(f"div.ansible-option-cell:has(> [id='{anchor}'])")


def test_a_module_page_shows_its_options_return_values_and_versions(site, page):
    documentation = _documentation(ROOT / "plugins" / "modules" / "package_source.py")
    page.goto((site / "package_source_module.html").as_uri())
    expect(page).to_have_title(re.compile(r"^slipway\.django\.package_source module – "))
    main = page.locator("div[role=main]")
    expect(main.locator("h1")).to_contain_text(typographic(documentation["short_description"]))
    for option in documentation["options"]:
        expect(_option(main, f"parameter-{option}").locator("p.ansible-option-title")).to_have_text(
            option)
    # An option added in 0.2.0 says so; one from 0.1.0 does not.
    expect(_option(main, "parameter-dependencies")).to_contain_text("added in slipway.django 0.2.0")
    expect(_option(main, "parameter-source")).not_to_contain_text("added in")
    expect(_option(main, "return-release_id").locator("p.ansible-option-title")).to_have_text(
        "release_id")
    expect(main).to_contain_text("Package a tag from a git repository")  # EXAMPLES


def _role_page_entry_points(site, page, role: str):
    specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    page.goto((site / f"{role}_role.html").as_uri())
    expect(page).to_have_title(re.compile(rf"^slipway\.django\.{role} role – "))
    main = page.locator("div[role=main]")
    for entry_point, spec in specs["argument_specs"].items():
        # The section's id is docutils' (underscores become hyphens), the options' antsibull's.
        section_id = "entry-point-" + entry_point.replace("_", "-") + "-"
        section = main.locator(f"section[id^='{section_id}']")
        expect(section.locator("h2")).to_contain_text(
            typographic(f"Entry point {entry_point} – {spec['short_description']}"))
        expect(section).to_contain_text(typographic(spec["description"][0][:60]))
        for option in spec["options"]:
            expect(_option(section, f"parameter-{entry_point}--{option}").locator(
                "p.ansible-option-title")).to_have_text(option)
    return main


def test_a_role_page_shows_its_entry_points_and_their_options(site, page):
    main = _role_page_entry_points(site, page, "app")
    # The entry point new in 0.2.0 says so, the others do not.
    added = "p.ansible-version-added"
    expect(main.locator(f"section[id^='entry-point-command-'] > {added}")).to_have_text(
        "New in slipway.django 0.2.0")
    expect(main.locator(f"section[id^='entry-point-main-'] > {added}")).to_have_count(0)


def test_the_release_role_page_shows_its_entry_points_rollback_included(site, page):
    main = _role_page_entry_points(site, page, "release")
    for entry_point in ("main", "rollback_plan", "rollback_switch", "rollback_finish"):
        section_id = "entry-point-" + entry_point.replace("_", "-") + "-"
        expect(main.locator(f"section[id^='{section_id}'] > p.ansible-version-added")).to_have_text(
            "New in slipway.django 0.2.0")
