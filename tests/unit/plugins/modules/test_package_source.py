"""package_source: the same source gives the same release, a change gives a new one."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest
from ansible_collections.slipway.django.plugins.modules import package_source

EXCLUDE = [".git", "__pycache__", "*.pyc", ".env"]


def make_app(root: Path) -> Path:
    (root / "config").mkdir(parents=True)
    (root / "manage.py").write_text("print('manage')\n")
    (root / "manage.py").chmod(0o755)
    (root / "config" / "settings.py").write_text("DEBUG = False\n")
    (root / "requirements.txt").write_text("Django==5.2.19\n")
    return root


def package(source: Path | str, dest: Path, check_mode: bool = False, version: str = "HEAD"):
    params = {"source": str(source), "version": version, "dest": str(dest), "exclude": EXCLUDE,
              "requirements": "requirements.txt", "dependencies": "auto"}
    return package_source.package(params, check_mode)


def test_same_content_gives_the_same_release_and_no_change(tmp_path):
    app = make_app(tmp_path / "app")
    first = package(app, tmp_path / "out")
    second = package(app, tmp_path / "out")
    assert first["changed"] is True
    assert second["changed"] is False
    assert first["release_id"] == second["release_id"]
    assert Path(first["archive"]).read_bytes() == Path(second["archive"]).read_bytes()


def test_a_changed_file_gives_a_new_release(tmp_path):
    app = make_app(tmp_path / "app")
    before = package(app, tmp_path / "out")["release_id"]
    (app / "config" / "settings.py").write_text("DEBUG = True\n")
    assert package(app, tmp_path / "out")["release_id"] != before


def test_file_times_do_not_change_the_release(tmp_path):
    app = make_app(tmp_path / "app")
    before = package(app, tmp_path / "out")
    (app / "manage.py").touch()
    after = package(app, tmp_path / "out2")
    assert after["release_id"] == before["release_id"]
    assert Path(after["archive"]).read_bytes() == Path(before["archive"]).read_bytes()


def test_excluded_files_are_left_out_of_the_archive(tmp_path):
    app = make_app(tmp_path / "app")
    (app / ".env").write_text("SECRET_KEY=do-not-ship\n")
    (app / "config" / "__pycache__").mkdir()
    (app / "config" / "__pycache__" / "settings.cpython-311.pyc").write_bytes(b"\0")
    result = package(app, tmp_path / "out")
    with tarfile.open(result["archive"]) as tar:
        names = sorted(tar.getnames())
        modes = {member.name: member.mode for member in tar.getmembers()}
    assert names == ["config/settings.py", "manage.py", "requirements.txt"]
    assert modes["manage.py"] == 0o755
    assert result["files"] == 3


def test_check_mode_reports_the_release_without_writing_it(tmp_path):
    app = make_app(tmp_path / "app")
    result = package(app, tmp_path / "out", check_mode=True)
    assert result["changed"] is True
    assert not Path(result["archive"]).exists()


def test_the_dependencies_are_reported_with_the_digest_of_their_whole_tree(tmp_path):
    app = make_app(tmp_path / "app")
    (app / "requirements.txt").write_text("-r requirements/production.txt\n")
    (app / "requirements").mkdir()
    (app / "requirements" / "production.txt").write_text("-r base.txt\ngunicorn==23.0.0\n")
    (app / "requirements" / "base.txt").write_text("Django==5.2.19\n")
    first = package(app, tmp_path / "out")
    assert first["dependencies"]["format"] == "requirements"
    assert first["dependencies"]["files"] == [
        "requirements.txt", "requirements/production.txt", "requirements/base.txt"]
    (app / "requirements" / "base.txt").write_text("Django==5.2.20\n")
    second = package(app, tmp_path / "out")
    assert second["dependencies"]["digest"] != first["dependencies"]["digest"]
    assert second["requirements_digest"] == second["dependencies"]["digest"]


def test_excluding_a_dependency_file_is_refused(tmp_path):
    app = make_app(tmp_path / "app")
    params = {"source": str(app), "version": "HEAD", "dest": str(tmp_path / "out"),
              "exclude": [*EXCLUDE, "requirements.txt"], "requirements": "requirements.txt",
              "dependencies": "auto"}
    with pytest.raises(package_source.SourceError, match="left out of the release"):
        package_source.package(params, False)


def test_an_archive_with_one_top_directory_packages_like_the_directory(tmp_path):
    app = make_app(tmp_path / "src" / "app-1.0")
    archive = tmp_path / "app-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(app, arcname="app-1.0")
    from_archive = package(archive, tmp_path / "out")
    from_directory = package(app, tmp_path / "out2")
    assert from_archive["source_type"] == "archive"
    assert from_archive["release_id"] == from_directory["release_id"]


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def repository(tmp_path):
    repo = make_app(tmp_path / "repo")
    git("init", "-q", "-b", "main", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@t", "add", ".", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "v1", cwd=repo)
    git("tag", "v1", cwd=repo)
    (repo / "config" / "settings.py").write_text("DEBUG = True\n")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-am", "v2", cwd=repo)
    return repo


def test_git_source_packages_the_requested_tag_and_reports_its_commit(tmp_path, repository):
    url = f"file://{repository}"
    v1 = package(url, tmp_path / "out", version="v1")
    main = package(url, tmp_path / "out", version="main")
    assert v1["source_type"] == "git"
    assert v1["commit"] == git("rev-parse", "v1^{commit}", cwd=repository)
    assert main["commit"] == git("rev-parse", "main", cwd=repository)
    assert main["branch"] == "main"
    assert v1["release_id"] != main["release_id"]
    with tarfile.open(v1["archive"]) as tar:
        settings = tar.extractfile("config/settings.py").read()
    assert settings == b"DEBUG = False\n"


def test_unknown_git_ref_fails_with_the_ref_in_the_message(tmp_path, repository):
    with pytest.raises(package_source.SourceError, match="no-such-branch"):
        package(f"file://{repository}", tmp_path / "out", version="no-such-branch")


def test_a_missing_source_fails_with_a_clear_message(tmp_path):
    with pytest.raises(package_source.SourceError, match="neither a directory"):
        package(tmp_path / "nowhere", tmp_path / "out")


@pytest.mark.parametrize("version", ["--output=MARKER", "-h", "", "main branch", "main\n--all"])
def test_a_version_git_could_read_as_an_option_is_refused_before_git_runs(
        tmp_path, repository, version):
    marker = tmp_path / "pwned"
    with pytest.raises(package_source.SourceError, match="not a branch, tag or commit name"):
        package(f"file://{repository}", tmp_path / "out",
                version=version.replace("MARKER", str(marker)))
    assert not (tmp_path / "out" / "git").exists()
    assert not marker.exists()
