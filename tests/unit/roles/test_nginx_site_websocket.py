"""The app's nginx site and WebSocket (nginx_websocket): on, a per-site map at http level turns a
client's Upgrade into Connection: upgrade and location / passes both on; off, the site is the
one in nginx_site/ (the site as written without the option), byte for byte. The default follows
app_server."""

from __future__ import annotations

import re
from pathlib import Path

import nginx_site
import pytest

BEFORE = Path(__file__).resolve().parent / "nginx_site"
# The variables of each site in nginx_site/ (rendered from the template without nginx_websocket).
CASES = {
    "http": {"app_name": "shop"},
    "tls-balancer": {"app_name": "shop-eu", "nginx_server_names": ["shop.example.com"],
                     "nginx_tls_certificate": "PEM", "nginx_tls_certificate_key": "KEY",
                     "nginx_upstream_servers": ["10.0.0.11:80", "10.0.0.12:80"],
                     "__nginx_http2_directive": False},
    "acme": {"app_name": "shop", "nginx_acme": True, "nginx_acme_email": "ops@example.com",
             "nginx_server_names": ["shop.example.com"], "__nginx_acme_ready": True,
             "__nginx_http2_directive": True},
}


def before(case: str) -> str:
    return (BEFORE / f"{case}.conf").read_text()


def http_level_maps(site: str) -> dict[str, str]:
    """The map blocks outside any block of the file (nginx includes the site in http {}):
    the variable each defines -> its body."""
    maps, depth = {}, 0
    lines = site.splitlines()
    for number, line in enumerate(lines):
        found = re.match(r"map (\S+) \$(\w+) \{$", line)
        if found and depth == 0:
            body = []
            for inner in lines[number + 1:]:
                if inner == "}":
                    break
                body.append(inner.strip())
            maps[found.group(2)] = " ".join([found.group(1), *body])
        depth += line.count("{") - line.count("}")
    assert depth == 0, "unbalanced braces"
    return maps


def app_location(site: str) -> list[str]:
    """The directives of the last `location / {` (the one proxying to the app, in the TLS server
    when there is one; the HTTP server's then only redirects)."""
    start = site.rindex("    location / {\n")
    block = site[start:site.index("\n    }\n", start)]
    return [line.strip() for line in block.splitlines()[1:]]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("off", [{"nginx_websocket": False}, {"app_server": "gunicorn"}, {}],
                         ids=["nginx_websocket-false", "gunicorn", "app_server-unset"])
def test_off_the_site_is_the_one_written_before(case, off):
    assert (nginx_site.render(**CASES[case], **off)) == before(case)


def test_off_with_an_asgi_server_when_asked():
    site = nginx_site.render(app_name="shop", app_server="uvicorn", nginx_websocket=False)
    assert (site) == before("http")


@pytest.mark.parametrize(("server", "expected"), [
    (None, False), ("gunicorn", False), ("uvicorn", True), ("gunicorn+uvicorn-worker", True)])
def test_the_default_follows_the_app_server(server, expected):
    variables = {"app_name": "shop"}
    if server is not None:
        variables["app_server"] = server
    assert nginx_site.value("nginx_websocket", **variables) is expected


@pytest.mark.parametrize("case", sorted(CASES))
def test_on_the_site_maps_upgrade_and_passes_it_on(case):
    site = nginx_site.render(**CASES[case], app_server="uvicorn")
    var = nginx_site.value("__nginx_site_var", **CASES[case])
    maps = http_level_maps(site)
    assert maps[f"slipway_connection_{var}"] == "$http_upgrade default upgrade; '' '';"
    location = app_location(site)
    assert location[:4] == [f"proxy_pass http://{CASES[case]['app_name']}_app;",
                            "proxy_http_version 1.1;",
                            "proxy_set_header Upgrade $http_upgrade;",
                            f"proxy_set_header Connection $slipway_connection_{var};"]
    assert 'proxy_set_header Connection "";' not in site


@pytest.mark.parametrize("case", sorted(CASES))
def test_on_adds_the_map_and_the_headers_and_nothing_else(case):
    site = nginx_site.render(**CASES[case], nginx_websocket=True)
    var = nginx_site.value("__nginx_site_var", **CASES[case])
    map_block = re.search(r"\n\n# WebSocket \(nginx_websocket\).*?\n}\n", site, re.S)
    assert map_block and f"map $http_upgrade $slipway_connection_{var} {{" in map_block.group(0)
    headers = ("        proxy_set_header Upgrade $http_upgrade;\n"
               f"        proxy_set_header Connection $slipway_connection_{var};\n")
    assert site.count(headers) == 1
    without = site.replace(map_block.group(0), "\n").replace(
        headers, '        proxy_set_header Connection "";\n')
    assert (without) == before(case)


def test_two_sites_on_one_host_each_define_their_own_map():
    # nginx -t refuses a variable two maps define: each site's is named after the site.
    shop = nginx_site.render(app_name="shop", app_server="uvicorn")
    admin = nginx_site.render(app_name="shop", nginx_site_name="shop-admin.v2",
                              app_server="uvicorn")
    assert [name for name in http_level_maps(shop) if "connection" in name] == [
        "slipway_connection_shop"]
    assert [name for name in http_level_maps(admin) if "connection" in name] == [
        "slipway_connection_shop_admin_v2"]
    assert "proxy_set_header Connection $slipway_connection_shop_admin_v2;" in app_location(admin)
