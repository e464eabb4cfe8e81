"""slipway.django.django_files and release_commands: a project's file settings checked and
placed in a release, and app_release_commands turned into manage-release argv."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.slipway.django.plugins.filter.django_files import (
    django_files,
    release_commands,
)

ROOT = "/srv/shop"
RELEASE = f"{ROOT}/releases/r1"


def info(**settings) -> dict:
    base = {"static_root": f"{RELEASE}/static", "static_url": "/static/",
            "media_root": f"{ROOT}/shared/media", "media_url": "/media/",
            "staticfiles_dirs": []}
    return {**base, **settings}


def test_slipways_environment_collects_into_the_release_and_serves_the_shared_media():
    files = django_files(info(), RELEASE, ROOT)
    assert files["errors"] == []
    assert files["static_rel"] == "static"
    assert files["static_url"] == "/static/"
    assert files["media_link"] == ""
    assert files["media_url"] == "/media/"


def test_a_hard_coded_static_root_in_the_project_is_used_and_media_is_linked():
    files = django_files(info(static_root=f"{RELEASE}/static-collected/",
                              media_root=f"{RELEASE}/uploads/files",
                              staticfiles_dirs=[f"{RELEASE}/assets"]), RELEASE, ROOT)
    assert files["errors"] == []
    assert files["static_rel"] == "static-collected"
    assert files["media_link"] == "uploads/files"


@pytest.mark.parametrize("static_root", [f"{ROOT}/current/static", "/var/www/static", ROOT,
                                         RELEASE, f"{RELEASE}/../r0/static", "static"])
def test_a_static_root_outside_the_release_is_refused_naming_it(static_root):
    errors = django_files(info(static_root=static_root), RELEASE, ROOT)["errors"]
    assert len(errors) == 1
    assert errors[0].startswith("STATIC_ROOT must be inside the release")
    assert "BASE_DIR / 'static-collected'" in errors[0]


@pytest.mark.parametrize("static_root", ["", None])
def test_an_unset_static_root_is_refused(static_root):
    errors = django_files(info(static_root=static_root), RELEASE, ROOT)["errors"]
    assert [error.split(" is not set")[0] for error in errors] == ["STATIC_ROOT"]


@pytest.mark.parametrize("listed", [f"{RELEASE}/static", f"{RELEASE}/static/"])
def test_a_static_root_listed_in_staticfiles_dirs_is_refused(listed):
    errors = django_files(info(staticfiles_dirs=[f"{RELEASE}/assets", listed]),
                          RELEASE, ROOT)["errors"]
    assert len(errors) == 1
    assert "is also listed in STATICFILES_DIRS" in errors[0]
    assert "staticfiles.E002" in errors[0]


def test_slipways_own_names_in_the_release_are_refused_as_static_root():
    for name in ("venv", ".slipway-static"):
        errors = django_files(info(static_root=f"{RELEASE}/{name}"), RELEASE, ROOT)["errors"]
        assert len(errors) == 1 and "that name is slipway's" in errors[0]


def test_a_media_root_elsewhere_is_refused_and_inside_static_root_too():
    errors = django_files(info(media_root="/var/media"), RELEASE, ROOT)["errors"]
    assert len(errors) == 1 and errors[0].startswith(f"MEDIA_ROOT must be {ROOT}/shared/media")
    errors = django_files(info(media_root=f"{RELEASE}/static/media"), RELEASE, ROOT)["errors"]
    assert len(errors) == 1 and "must not be inside STATIC_ROOT" in errors[0]


@pytest.mark.parametrize("media_url", ["", "/"])
def test_an_unset_media_root_serves_no_media(media_url):
    # Django reports an unset MEDIA_URL as the script prefix: '/' (startproject sets neither).
    files = django_files(info(media_root="", media_url=media_url), RELEASE, ROOT)
    assert files["errors"] == [] and files["media_link"] == "" and files["media_url"] == ""


@pytest.mark.parametrize("setting", ["static_url", "media_url"])
def test_a_url_of_the_whole_site_is_refused(setting):
    files = django_files(info(**{setting: "/"}), RELEASE, ROOT)
    assert files[setting] == ""
    assert len(files["errors"]) == 1 and f"{setting.upper()} must not be '/'" in files["errors"][0]


def test_urls_of_another_server_are_not_served_and_bad_paths_are_refused():
    files = django_files(info(static_url="https://cdn.example.com/s/", media_url="//cdn/m/"),
                         RELEASE, ROOT)
    assert files["errors"] == [] and files["static_url"] == "" and files["media_url"] == ""
    errors = django_files(info(static_url="/static"), RELEASE, ROOT)["errors"]
    assert len(errors) == 1 and errors[0].startswith("STATIC_URL must be a URL path")
    errors = django_files(info(static_url="/st atic/; root /"), RELEASE, ROOT)["errors"]
    assert len(errors) == 1


def test_release_commands_split_like_a_shell_and_shell_entries_read_stdin():
    commands = release_commands(["createcachetable", "compress --force",
                                 "loaddata 'my data.json'", {"shell": "echo hi\necho two"}])
    assert [command["argv"] for command in commands[:3]] == [
        ["createcachetable"], ["compress", "--force"], ["loaddata", "my data.json"]]
    assert all(command["stdin"] is None for command in commands[:3])
    assert commands[3]["argv"][:2] == ["shell", "--command"]
    assert commands[3]["stdin"] == "echo hi\necho two"
    assert commands[3]["label"] == "shell: echo hi"
    assert release_commands([]) == [] and release_commands(None) == []


@pytest.mark.parametrize("entries", [[""], ["  "], [{"shell": ""}], [{"run": "x"}],
                                     [{"shell": "x", "user": "root"}], [3], ["'unclosed"],
                                     "createcachetable"])
def test_bad_release_commands_are_refused_naming_the_entry(entries):
    with pytest.raises(AnsibleFilterError, match="app_release_commands"):
        release_commands(entries)
