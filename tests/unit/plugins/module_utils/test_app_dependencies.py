"""app_dependencies: the formats users have, found or named, and clear errors for the rest."""

from __future__ import annotations

import pytest
from ansible_collections.slipway.django.plugins.module_utils.app_dependencies import (
    DependencyError,
    detect,
    requirements_tree,
)

PYPROJECT = """\
[project]
name = "shop"
version = "1.0"
requires-python = ">=3.12"
dependencies = ["Django>=6.0,<6.1", "gunicorn"]
"""


def test_requirements_includes_are_followed_relative_to_the_including_file(tmp_path):
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements.txt").write_text("-r requirements/production.txt\n")
    (tmp_path / "requirements" / "production.txt").write_text(
        "# prod\n-r base.txt\n--constraint=constraints.txt\ngunicorn\n")
    (tmp_path / "requirements" / "base.txt").write_text("-rextra.txt\nDjango\n")
    (tmp_path / "requirements" / "extra.txt").write_text("--requirement base.txt\n")
    (tmp_path / "requirements" / "constraints.txt").write_text("Django<6\n")
    assert requirements_tree(str(tmp_path), "requirements.txt") == [
        "requirements.txt", "requirements/production.txt", "requirements/base.txt",
        "requirements/constraints.txt", "requirements/extra.txt"]


@pytest.mark.parametrize(("line", "message"), [
    ("-r missing.txt", "requirements file missing.txt (included by requirements.txt line 1)"),
    ("-r ../outside.txt", "outside the source"),
    ("-r https://example.com/r.txt", "a URL"),
])
def test_a_bad_include_names_the_file_and_the_line(tmp_path, line, message):
    (tmp_path / "requirements.txt").write_text(line + "\n")
    with pytest.raises(DependencyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        detect(str(tmp_path))


def test_a_changed_include_changes_the_digest(tmp_path):
    (tmp_path / "requirements.txt").write_text("-r base.txt\n")
    (tmp_path / "base.txt").write_text("Django==5.2.1\n")
    before = detect(str(tmp_path))["digest"]
    (tmp_path / "base.txt").write_text("Django==5.2.2\n")
    assert detect(str(tmp_path))["digest"] != before


def test_pyproject_with_uv_lock_is_the_uv_format(tmp_path):
    (tmp_path / "pyproject.toml").write_text(PYPROJECT + "[tool.uv]\npackage = false\n")
    (tmp_path / "uv.lock").write_text("version = 1\n")
    found = detect(str(tmp_path))
    assert found["format"] == "uv"
    assert found["files"] == ["pyproject.toml", "uv.lock"]
    assert found["requires_python"] == ">=3.12"
    assert found["build_project"] is False


def test_a_plain_pyproject_lists_its_dependencies(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        PYPROJECT + '[build-system]\nrequires = ["setuptools"]\n'
        'build-backend = "setuptools.build_meta"\n')
    found = detect(str(tmp_path))
    assert found["format"] == "pyproject"
    assert found["dependencies"] == ["Django>=6.0,<6.1", "gunicorn"]
    assert found["build_project"] is True


def test_requirements_win_over_pyproject_when_both_exist(tmp_path):
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "requirements.txt").write_text("Django\n")
    found = detect(str(tmp_path))
    assert found["format"] == "requirements"
    assert found["requires_python"] == ">=3.12"


def test_no_dependency_file_names_every_format_looked_for(tmp_path):
    (tmp_path / "manage.py").write_text("")
    with pytest.raises(DependencyError) as error:
        detect(str(tmp_path))
    for name in ("requirements.txt", "app_requirements_file", "uv.lock", "[project]"):
        assert name in str(error.value)


@pytest.mark.parametrize(("wanted", "message"), [
    ("poetry", "use one of auto, requirements, uv, pyproject"),
    ("uv", "pyproject.toml and uv.lock are not in the source"),
    ("requirements", "requirements.txt (app_requirements_file) is not in the source"),
    ("pyproject", "no pyproject.toml with a [project] table"),
])
def test_a_named_format_the_source_lacks_is_refused(tmp_path, wanted, message):
    with pytest.raises(DependencyError, match=message.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)")):
        detect(str(tmp_path), wanted)


@pytest.mark.parametrize("wanted", ["auto", "requirements"])
def test_a_requirements_file_not_in_the_source_names_those_that_are(tmp_path, wanted):
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "base.txt").write_text("Django\n")
    (tmp_path / "requirements" / "production.txt").write_text("-r base.txt\ngunicorn\n")
    (tmp_path / "requirements.txt").write_text("-r requirements/production.txt\n")
    with pytest.raises(DependencyError) as error:
        detect(str(tmp_path), wanted, "requirements/prod.txt")
    assert str(error.value).endswith(
        "requirements/prod.txt (app_requirements_file) is not in the source, which has "
        "requirements.txt, requirements/base.txt, requirements/production.txt: set "
        "app_requirements_file to the one that installs the app in production")
