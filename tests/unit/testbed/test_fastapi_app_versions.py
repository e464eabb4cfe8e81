"""The FastAPI app's versions (tests/testbed/fastapi_app.py): the files a deploy needs, the same
bytes on every run, a revision chain per version, and a front-end lock npm ci can install from
the public registry alone. Running the app on MariaDB: tests/integration/apps."""

from __future__ import annotations

import ast
import base64
import json
import re
from pathlib import Path

import fastapi_app
import pytest
from ansible_collections.slipway.django.plugins.modules import package_source

EXCLUDE = ["__pycache__", "*.pyc"]
REGISTRY = "https://registry.npmjs.org/"


@pytest.fixture(scope="module")
def outdir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fastapi")
    fastapi_app.write_versions(out)
    return out


def files(tree: Path) -> dict[str, bytes]:
    return {str(path.relative_to(tree)): path.read_bytes()
            for path in sorted(tree.rglob("*")) if path.is_file()}


def release_id(tree: Path) -> str:
    return package_source.tree_digest(str(tree), package_source.walk_files(str(tree), EXCLUDE))


def revisions(tree: Path) -> dict[str, str | None]:
    """revision -> down_revision, as each file under backend/alembic/versions declares them."""
    chain = {}
    for path in sorted((tree / "backend" / "alembic" / "versions").glob("*.py")):
        names = {}
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                names[node.targets[0].id] = ast.literal_eval(node.value)
        chain[names["revision"]] = names["down_revision"]
    return chain


def test_every_run_writes_the_same_files_and_release_ids(outdir, tmp_path):
    again = fastapi_app.write_versions(tmp_path)
    for version, tree in again.items():
        assert files(tree) == files(outdir / version)
        modes = {path.stat().st_mode & 0o777 for path in tree.rglob("*")}
        assert modes == {0o755, 0o644}
    ids = {release_id(outdir / version) for version in fastapi_app.VERSIONS}
    assert {release_id(tree) for tree in again.values()} == ids
    assert len(ids) == 3


@pytest.mark.parametrize("version", fastapi_app.VERSIONS)
def test_each_version_has_the_files_a_deploy_needs(outdir, version):
    tree = outdir / version
    written = files(tree)
    for name in ("backend/requirements.txt", "backend/alembic.ini", "backend/alembic/env.py",
                 "backend/app/main.py", "backend/app/core/config.py",
                 "backend/app/core/database.py", "frontend/package.json",
                 "frontend/package-lock.json", "frontend/build.mjs", "frontend/index.html",
                 "frontend/src/app.js"):
        assert name in written, name
    for model in ("user", "task", "ai_output", "issue", "task_log"):
        assert f"backend/app/models/{model}.py" in written
    # The deploy's settings name files that exist.
    deploy = fastapi_app.DEPLOY
    assert (tree / deploy["app_requirements_file"]).is_file()
    assert (tree / deploy["app_env"]["ALEMBIC_CONFIG"]).is_file()
    module, attr = deploy["app_asgi_application"].split(":")
    main = tree / deploy["app_env"]["PYTHONPATH"] / Path(*module.split(".")).with_suffix(".py")
    assert re.search(rf"^{attr} = FastAPI\(", main.read_text(), re.MULTILINE)
    assert (tree / deploy["app_frontend"]["path"] / "package.json").is_file()
    # Each version names itself on /health and in its bundle, and no other.
    assert f'VERSION = "{version}"' in (tree / "backend/app/core/config.py").read_text()
    bundle = (tree / "frontend/src/app.js").read_text()
    assert [marker for marker in fastapi_app.MARKERS.values() if marker in bundle] == [
        fastapi_app.MARKERS[version]]


@pytest.mark.parametrize("version", fastapi_app.VERSIONS)
def test_the_python_compiles_and_the_revisions_make_one_chain(outdir, version):
    tree = outdir / version
    for path in (tree / "backend").rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
    chain = revisions(tree)
    head = fastapi_app.HEADS[version]
    expected, current = [], head
    while current is not None:
        expected.append(current)
        current = chain[current]
    assert sorted(expected) == sorted(chain) == ["001", "002", "003"][:int(head)]


def test_requirements_pin_every_line(outdir):
    lines = (outdir / "v1" / "backend" / "requirements.txt").read_text().splitlines()
    assert {line.split("==")[0].lower() for line in lines} == {
        "fastapi", "uvicorn", "sqlalchemy", "alembic", "pymysql"}
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.]*", line) for line in lines)


def test_the_description_names_what_each_version_shows(outdir):
    described = json.loads((outdir / "fastapi-app.json").read_text())
    assert described["deploy"] == fastapi_app.DEPLOY
    assert [entry["migrate_fails"] for entry in described["versions"].values()] == [
        False, False, True]
    assert described["versions"]["v2"]["bundle_marker"] == "bundle v2"


def test_the_lock_fixture_installs_from_the_public_registry_only():
    lock = json.loads(fastapi_app.LOCK_FIXTURE.read_text())
    package = json.loads(fastapi_app.FRONTEND_PACKAGE)
    assert lock["lockfileVersion"] == 3
    # npm ci refuses a lock that does not match package.json.
    root = lock["packages"][""]
    assert (lock["name"], lock["version"]) == (package["name"], package["version"])
    assert root["devDependencies"] == package["devDependencies"]
    assert "dependencies" not in package
    installed = {name: entry for name, entry in lock["packages"].items() if name}
    assert "node_modules/terser" in installed
    for name, entry in installed.items():
        assert name.startswith("node_modules/"), name
        package_name = name.removeprefix("node_modules/").rsplit("node_modules/", 1)[-1]
        tarball = package_name.rsplit("/", 1)[-1]
        assert entry["resolved"] == (
            f"{REGISTRY}{package_name}/-/{tarball}-{entry['version']}.tgz"), name
        algorithm, digest = entry["integrity"].split("-", 1)
        assert algorithm == "sha512", name
        assert len(base64.b64decode(digest, validate=True)) == 64, name
        # Pure JavaScript: nothing to compile or to run at install time.
        assert not entry.get("hasInstallScript") and not entry.get("gypfile"), name
        assert entry.get("dev") is True, name
