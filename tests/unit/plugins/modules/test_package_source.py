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


FRONTEND = {"path": "frontend", "output": "dist", "build": "npm ci && npm run build",
            "node": "debian"}


def make_frontend(app: Path) -> Path:
    front = app / "frontend"
    (front / "src").mkdir(parents=True)
    (front / "package.json").write_text('{"name": "front", "scripts": {"build": "node b.mjs"}}\n')
    (front / "package-lock.json").write_text('{"lockfileVersion": 3, "packages": {}}\n')
    (front / "src" / "app.js").write_text("console.log('v1');\n")
    return front


def package_frontend(app: Path, dest: Path, frontend: dict | None = None,
                     exclude: list[str] | None = None):
    params = {"source": str(app), "version": "HEAD", "dest": str(dest),
              "exclude": EXCLUDE + ["node_modules"] if exclude is None else exclude,
              "requirements": "requirements.txt", "dependencies": "auto",
              "frontend": FRONTEND if frontend is None else frontend}
    return package_source.package(params, False)


def test_a_front_end_is_reported_with_a_digest_of_what_its_build_reads(tmp_path):
    app = make_app(tmp_path / "app")
    make_frontend(app)

    result = package_frontend(app, tmp_path / "out")

    frontend = result["frontend"]
    assert (frontend["path"], frontend["output"], frontend["lock_file"]) == (
        "frontend", "dist", "package-lock.json")
    assert frontend["files"] == 3
    assert len(frontend["digest"]) == 64
    assert package(app, tmp_path / "out")["frontend"] == {}


def test_the_front_end_digest_follows_its_sources_lock_build_and_node_only(tmp_path):
    app = make_app(tmp_path / "app")
    front = make_frontend(app)
    first = package_frontend(app, tmp_path / "out")["frontend"]["digest"]

    # Its own output, installed packages and the Python side do not change it.
    (front / "dist").mkdir()
    (front / "dist" / "app.js").write_text("built\n")
    (front / "node_modules" / "terser").mkdir(parents=True)
    (front / "node_modules" / "terser" / "index.js").write_text("x\n")
    (app / "config" / "settings.py").write_text("DEBUG = True\n")
    assert package_frontend(app, tmp_path / "out", exclude=EXCLUDE)["frontend"]["digest"] \
        == first

    digests = {first}
    (front / "src" / "app.js").write_text("console.log('v2');\n")
    digests.add(package_frontend(app, tmp_path / "out")["frontend"]["digest"])
    (front / "package-lock.json").write_text('{"lockfileVersion": 3, "packages": {"a": {}}}\n')
    digests.add(package_frontend(app, tmp_path / "out")["frontend"]["digest"])
    digests.add(package_frontend(app, tmp_path / "out", {**FRONTEND, "build": "npm run build"})
                ["frontend"]["digest"])
    digests.add(package_frontend(app, tmp_path / "out", {**FRONTEND, "node": "22"})
                ["frontend"]["digest"])
    assert len(digests) == 5


def test_a_front_end_without_a_lock_file_is_refused(tmp_path):
    app = make_app(tmp_path / "app")
    (make_frontend(app) / "package-lock.json").unlink()

    with pytest.raises(package_source.SourceError, match="has no lock file"):
        package_frontend(app, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_yarn_lock_counts_as_the_lock_file(tmp_path):
    app = make_app(tmp_path / "app")
    front = make_frontend(app)
    (front / "package-lock.json").unlink()
    (front / "yarn.lock").write_text("# yarn lockfile v1\n")

    assert package_frontend(app, tmp_path / "out")["frontend"]["lock_file"] == "yarn.lock"


@pytest.mark.parametrize(("frontend", "message"), [
    ({"path": "web"}, "is not a directory of the source"),
    ({"path": "config"}, "has no package.json"),
    ({"path": "../frontend"}, "must be a relative directory"),
    ({"path": "/srv/frontend"}, "must be a relative directory"),
    ({"path": "frontend", "output": "../dist"}, "must be a relative directory"),
    ({"path": "frontend", "output": "di\nst"}, "must be a relative directory"),
])
def test_a_bad_front_end_is_refused_before_anything_is_written(tmp_path, frontend, message):
    app = make_app(tmp_path / "app")
    make_frontend(app)

    with pytest.raises(package_source.SourceError, match=message):
        package_frontend(app, tmp_path / "out", {**FRONTEND, **frontend})
    assert not (tmp_path / "out").exists()
