"""nginx_sites: another site (the console's, a user's service) is written from the app's site
template with its own upstream, TLS and locations, and none of the app's own features."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "testbed"))

import nginx_site  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
CONSOLE_SITE = {
    "name": "slipway-console", "server_names": ["console.example.com"],
    "upstream": ["127.0.0.1:8765"], "tls_certificate": "CERT", "tls_certificate_key": "KEY",
    "hide_headers": ["X-Frame-Options"],
    "locations": [{"match": "~ ^/api/v1/deploy/logs/[0-9]+/stream$", "buffering": False,
                   "read_timeout": "10m", "comment": "Live logs."}],
}


def render(site: dict, tls: bool) -> str:
    defaults = nginx_site.role_variables()["__nginx_site_defaults"]
    complete = {**defaults, **site, "tls": tls,
                "certificate_file": f"/etc/nginx/tls/{site['name']}.crt",
                "certificate_key_file": f"/etc/nginx/tls/{site['name']}.key"}
    return nginx_site.render(__nginx_site=complete, __nginx_http2_directive=True)


def test_a_site_of_its_own_proxies_to_its_upstream_with_tls_and_its_locations():
    conf = render(CONSOLE_SITE, tls=True)

    assert "upstream slipway-console_app {\n    server 127.0.0.1:8765 max_fails=1" in conf
    assert "return 301 https://$host$request_uri;" in conf
    assert "listen 443 ssl;" in conf and "http2 on;" in conf
    assert "ssl_certificate /etc/nginx/tls/slipway-console.crt;" in conf
    assert "server_name console.example.com;" in conf
    assert "proxy_hide_header X-Frame-Options;" in conf
    assert 'add_header Strict-Transport-Security "max-age=31536000' in conf
    stream = conf.split("location ~ ^/api/v1/deploy/logs/[0-9]+/stream$ {", 1)[1]
    stream = stream.split("\n    }\n", 1)[0]
    assert "proxy_buffering off;" in stream
    assert "proxy_read_timeout 10m;" in stream
    assert "proxy_pass http://slipway-console_app;" in stream
    # The location comes before location /, which keeps the defaults.
    assert conf.index("location ~ ^/api/v1") < conf.index("    location / {\n        proxy_pass")
    assert "proxy_read_timeout 60s;" in conf.split("    location / {\n        proxy_pass", 1)[1]


def test_a_site_of_its_own_has_none_of_the_apps_features():
    conf = render(CONSOLE_SITE, tls=False)

    for app_only in ("maintenance", "acme-challenge", "-files.conf", "-upstream.conf",
                     "proxy_next_upstream", "Strict-Transport-Security", "listen 443"):
        assert app_only not in conf, app_only
    assert "\n\n\n" not in conf


def test_the_consoles_site_is_one_of_nginx_sites():
    variables = yaml.safe_load((ROOT / "roles/console/vars/main.yml").read_text())
    site = variables["__console_nginx_site"]
    assert site["locations"][0]["buffering"] is False
    assert site["upstream"] == ["127.0.0.1:{{ console_port }}"]
    assert not (ROOT / "roles/console/templates/etc/nginx").exists()
    tasks = (ROOT / "roles/console/tasks/nginx.yml").read_text()
    assert "tasks_from: sites" in tasks and "role_path" not in tasks
