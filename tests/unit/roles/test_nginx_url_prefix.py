"""An app under a URL prefix (app_url_prefix): its site has no server of its own, its mount holds
its locations, the app at / of the same names and port includes the mounts; the app's environment
and unit and the health gate's URLs follow the prefix. The real nginx serving all of it is
tests/integration/nginx/test_url_prefix.py."""

from __future__ import annotations

import nginx_site
import pytest
import role_templates

SHOP = {"app_name": "shop", "app_url_prefix": "/shop/", "app_framework": "django"}


def test_a_prefixed_site_has_its_upstream_and_no_server():
    site = nginx_site.render(**SHOP)
    assert "upstream shop_app {" in site
    assert "server {" not in site
    assert "/etc/nginx/slipway/mounts/_-80/shop.conf" in site


@pytest.mark.parametrize(("server", "proxy_pass"), [
    ("gunicorn", "proxy_pass http://shop_app;"), ("uvicorn", "proxy_pass http://shop_app/;")])
def test_the_mount_passes_the_whole_path_to_gunicorn_and_strips_it_for_uvicorn(server, proxy_pass):
    mount = nginx_site.render(__nginx_part="mount", **SHOP, app_server=server)
    lines = [line.strip() for line in mount.splitlines()]
    assert "location /shop/ {" in lines and "location = /shop {" in lines
    assert proxy_pass in lines
    assert "include /etc/nginx/snippets/shop-files.conf;" in lines
    assert "if ($slipway_maintenance_shop) {" in lines


def test_the_files_before_the_first_deploy_are_under_the_prefix():
    assert nginx_site.value("nginx_static_url", **SHOP) == "/shop/static/"
    assert nginx_site.value("nginx_media_url", **SHOP) == "/shop/media/"
    assert nginx_site.value("nginx_frontend_url", app_name="ui", app_url_prefix="/ui",
                            app_frontend={"url": "/assets/"}) == "/ui/assets/"


def test_the_shell_includes_the_mounts_and_answers_404_elsewhere():
    shell = nginx_site.render(__nginx_part="shell", **SHOP, nginx_listen_port=8080)
    lines = [line.strip() for line in shell.splitlines()]
    assert "include /etc/nginx/slipway/mounts/_-8080/*.conf;" in lines
    assert lines[lines.index("location / {") + 1] == "return 404;"


def test_the_mount_key_names_the_server_names_and_port():
    assert nginx_site.value("__nginx_mount_key", app_name="a",
                            nginx_server_names=["shop.example.com", "*.example.org"],
                            nginx_listen_port=8080) == "shop.example.com_.example.org-8080"


@pytest.mark.parametrize(("prefix", "expected"), [("/", ""), ("/shop/", "/shop"), ("/a/b", "/a/b")])
def test_the_prefix_is_normalised(prefix, expected):
    assert role_templates.value("app", "__app_url_prefix", app_url_prefix=prefix) == expected


@pytest.mark.parametrize(("server", "health", "pages"), [
    ("gunicorn", "http://127.0.0.1/shop/health/", "http://127.0.0.1/shop"),
    ("uvicorn", "http://127.0.0.1/health/", "http://127.0.0.1")])
def test_the_gate_asks_a_slots_socket_for_the_path_nginx_passes_on(server, health, pages):
    variables = {"app_name": "shop", "app_url_prefix": "/shop/", "app_server": server,
                 "__release_gate_socket": "/run/shop/web-blue.sock"}
    assert role_templates.value("app", "app_health_url", **variables) == "http://127.0.0.1/shop/health/"
    assert role_templates.value("release", "__release_gate_health_url", **variables) == health
    assert role_templates.value("release", "__release_gate_pages_base", **variables) == pages
    # Through nginx, the prefix stays.
    del variables["__release_gate_socket"]
    assert role_templates.value("release", "__release_gate_pages_base", **variables) \
        == "http://127.0.0.1/shop"


def test_the_app_gets_script_name_under_a_prefix_only():
    variables = {"app_name": "shop", "app_secret_key": "k", "app_db_password": "p",
                 "inventory_hostname": "app1"}
    at_root = role_templates.value("app", "__app_base_environment", **variables)
    assert "SCRIPT_NAME" not in at_root
    under = role_templates.value("app", "__app_base_environment", app_url_prefix="/shop/",
                                 **variables)
    assert under["SCRIPT_NAME"] == "/shop"
