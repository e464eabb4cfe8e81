"""Where the deploy history is kept: one answer for the callback, slipway-history and the
console (slipway.history.resolve_store_url), from the ansible.cfg Ansible would read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slipway import ansible_cfg
from slipway.ansible_cfg import ConfigFileError, cfg_value, find_ansible_cfg
from slipway.history import resolve_store_url


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("SLIPWAY_HISTORY_DB", raising=False)
    monkeypatch.delenv("ANSIBLE_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def write_cfg(directory: Path, db: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    cfg = directory / "ansible.cfg"
    cfg.write_text(f"[defaults]\nforks = 5\n\n[callback_deploy_history]\ndb = {db}\n")
    return cfg


def test_a_relative_sqlite_path_in_ansible_cfg_is_relative_to_that_file(tmp_path, monkeypatch):
    cfg = write_cfg(tmp_path / "project", "state/history.sqlite3")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("ANSIBLE_CONFIG", str(cfg))

    assert resolve_store_url() == str(tmp_path / "project" / "state" / "history.sqlite3")
    assert resolve_store_url(config_file=cfg) == str(tmp_path / "project" / "state"
                                                     / "history.sqlite3")


def test_urls_absolute_and_home_paths_in_ansible_cfg_are_kept(tmp_path):
    for value in ("postgresql://u:p@db.example.com/history", "/var/lib/h.sqlite3",
                  "~/h.sqlite3"):
        cfg = write_cfg(tmp_path / "p", value)
        assert resolve_store_url(config_file=cfg) == value


def test_the_order_is_explicit_then_environment_then_ansible_cfg_then_default(
        tmp_path, monkeypatch):
    cfg = write_cfg(tmp_path / "p", "/cfg.sqlite3")
    monkeypatch.setenv("SLIPWAY_HISTORY_DB", "/env.sqlite3")

    assert resolve_store_url("/explicit.sqlite3", config_file=cfg) == "/explicit.sqlite3"
    assert resolve_store_url(config_file=cfg) == "/env.sqlite3"
    monkeypatch.delenv("SLIPWAY_HISTORY_DB")
    assert resolve_store_url(config_file=cfg) == "/cfg.sqlite3"
    assert resolve_store_url(cwd=tmp_path / "nowhere") == str(
        tmp_path / "data" / "slipway" / "history.sqlite3")


@pytest.mark.parametrize("with_ansible", [True, False], ids=["ansible", "configparser"])
def test_ansible_cfg_is_read_as_ansible_reads_it(tmp_path, monkeypatch, with_ansible):
    if not with_ansible:  # the reader of a Python without ansible-core reads it alike
        monkeypatch.setattr(ansible_cfg, "ConfigManager", None)
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[callback_deploy_history]\ndb = /h.sqlite3 ; where the history goes\n"
                   "[defaults]\nremote_tmp = %(HOME)s/tmp\nempty =\n")

    assert cfg_value(cfg, "callback_deploy_history", "db") == "/h.sqlite3"
    assert cfg_value(cfg, "defaults", "remote_tmp") == "%(HOME)s/tmp"  # no interpolation
    assert cfg_value(cfg, "defaults", "empty") is None
    assert cfg_value(cfg, "defaults", "missing") is None
    assert cfg_value(cfg, "missing", "db") is None


@pytest.mark.parametrize("with_ansible", [True, False], ids=["ansible", "configparser"])
def test_an_unreadable_ansible_cfg_is_an_error_naming_it(tmp_path, monkeypatch, with_ansible):
    if not with_ansible:
        monkeypatch.setattr(ansible_cfg, "ConfigManager", None)
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("no section header\n")

    with pytest.raises(ConfigFileError, match=str(cfg)):
        resolve_store_url(config_file=cfg)


def test_ansible_cfg_is_searched_in_ansible_order(tmp_path, monkeypatch):
    project = tmp_path / "project"
    in_cwd = write_cfg(project, "/cwd.sqlite3")
    home = write_cfg(tmp_path / "home", "/home.sqlite3")
    home.rename(tmp_path / "home" / ".ansible.cfg")
    chosen = write_cfg(tmp_path / "chosen", "/chosen.sqlite3")

    monkeypatch.setenv("ANSIBLE_CONFIG", str(chosen.parent))  # a directory holding ansible.cfg
    assert find_ansible_cfg(cwd=project) == chosen
    monkeypatch.delenv("ANSIBLE_CONFIG")
    assert find_ansible_cfg(cwd=project) == in_cwd
    monkeypatch.chdir(project)
    assert find_ansible_cfg() == in_cwd  # Ansible's own search
    assert find_ansible_cfg(cwd=tmp_path) == tmp_path / "home" / ".ansible.cfg"
    project.chmod(0o777)  # a world-writable directory's ansible.cfg is ignored, as Ansible does
    try:
        assert find_ansible_cfg(cwd=project) == tmp_path / "home" / ".ansible.cfg"
        assert resolve_store_url() == "/home.sqlite3"
    finally:
        project.chmod(0o755)
    assert os.environ.get("ANSIBLE_CONFIG") is None
