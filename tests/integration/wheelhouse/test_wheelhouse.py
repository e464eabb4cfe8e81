"""slipway.django.wheelhouse through a real ansible-playbook: wheels built from PyPI with a real
interpreter, for each dependency format, cached, offline, and the failures users meet."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ansible_task import run_task  # noqa: E402

UV = "uv==0.13.9"
OLDER_UV = "uv==0.13.8"
SIX = "six==1.16.0"


def interpreter() -> str:
    """A real CPython with venv, as a host would have (python3 on PATH, resolved)."""
    found = shutil.which("python3")
    assert found, "python3 is not on PATH"
    return str(Path(found).resolve())


def version_of(python: str) -> tuple[int, int]:
    out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"],
                         capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), int(out[1])


def members(archive: str) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {member.name.lstrip("./"):
                tar.extractfile(member).read() if member.isfile() else b""
                for member in tar.getmembers()}


def build(tmp_path: Path, source: Path, key: str = "k1", **args) -> dict:
    return run_task("wheelhouse", {"python": interpreter(), "source": str(source),
                                   "dest": str(tmp_path / "cache"), "key": key, **args})


def test_a_requirements_tree_with_includes_is_built_then_reused(tmp_path):
    source = tmp_path / "app"
    (source / "requirements").mkdir(parents=True)
    (source / "requirements.txt").write_text("-r requirements/production.txt\n")
    (source / "requirements" / "production.txt").write_text(f"-r base.txt\n{SIX}\n")
    (source / "requirements" / "base.txt").write_text("idna==3.10\n")
    first = build(tmp_path, source)
    assert first.get("failed") is not True, first
    assert first["changed"] is True
    content = members(first["archive"])
    assert any(name.startswith("six-1.16.0-") for name in content)
    assert any(name.startswith("idna-3.10-") for name in content)
    assert content["slipway-requirements.txt"].decode().split() == ["idna==3.10", SIX]
    assert first["wheels"] == 2
    assert oct(Path(first["archive"]).stat().st_mode & 0o777) == "0o600"
    again = build(tmp_path, source)
    assert again["changed"] is False
    assert again["wheels"] == 2


def test_check_mode_reports_the_build_without_building(tmp_path):
    source = tmp_path / "app"
    source.mkdir()
    (source / "requirements.txt").write_text(f"{SIX}\n")
    result = run_task("wheelhouse", {"python": interpreter(), "source": str(source),
                                     "dest": str(tmp_path / "cache"), "key": "k"}, check=True)
    assert result["changed"] is True
    assert not Path(result["archive"]).exists()


def test_a_plain_pyproject_project_is_built_with_its_dependencies_and_tools(tmp_path):
    source = tmp_path / "app"
    (source / "shop").mkdir(parents=True)
    (source / "shop" / "__init__.py").write_text("")
    (source / "pyproject.toml").write_text(
        '[project]\nname = "shop"\nversion = "1.2"\ndependencies = ["six==1.16.0"]\n'
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '[tool.setuptools]\npackages = ["shop"]\n')
    result = build(tmp_path, source, format="pyproject", dependencies=[SIX], build_project=True,
                   tools=[UV])
    assert result.get("failed") is not True, result
    content = members(result["archive"])
    assert content["slipway-requirements.txt"].decode().split() == ["shop==1.2", SIX]
    assert [name for name in result["tools"] if name.startswith("uv-0.13.9-")]


def uv_project(tmp_path: Path) -> Path:
    """A uv project (no package) depending on six, whose uv.lock holds an older six than the
    newest: a build must take the lock's, not re-resolve."""
    tools = tmp_path / "tools"
    subprocess.run([interpreter(), "-m", "venv", str(tools)], check=True)
    subprocess.run([str(tools / "bin" / "pip"), "install", "--quiet", UV], check=True)
    source = tmp_path / "app"
    source.mkdir()
    (source / "pyproject.toml").write_text(
        '[project]\nname = "shop"\nversion = "1.0"\nrequires-python = ">=3.10"\n'
        'dependencies = ["six"]\n[tool.uv]\npackage = false\n')
    subprocess.run([str(tools / "bin" / "uv"), "lock", "--quiet", "--exclude-newer",
                    "2021-06-01T00:00:00Z"], cwd=source, check=True)
    return source


def test_a_uv_lock_is_installed_as_locked(tmp_path):
    result = build(tmp_path, uv_project(tmp_path), format="uv", tools=[UV])
    assert result.get("failed") is not True, result
    pins = members(result["archive"])["slipway-requirements.txt"].decode().split()
    assert pins == [SIX]


def test_a_lock_is_exported_by_the_uv_the_tools_pin_after_the_pin_changed(tmp_path):
    source = uv_project(tmp_path)
    first = build(tmp_path, source, key="k1", format="uv", tools=[OLDER_UV])
    assert first.get("failed") is not True, first

    second = build(tmp_path, source, key="k2", format="uv", tools=[UV])

    assert second.get("failed") is not True, second
    assert [name for name in second["tools"] if name.startswith("uv-0.13.9-")]
    build_envs = list((tmp_path / "cache").glob("buildenv-*"))
    assert len(build_envs) == 1, build_envs
    version = subprocess.run([str(build_envs[0] / "bin" / "uv"), "--version"],
                             capture_output=True, text=True, check=True).stdout
    assert version.split()[:2] == ["uv", UV.split("==")[1]]


def test_the_offline_path_builds_from_the_users_wheels_without_any_index(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([interpreter(), "-m", "pip", "download", "--quiet", "--only-binary=:all:",
                    "--dest", str(wheels), SIX], check=True)
    source = tmp_path / "app"
    source.mkdir()
    (source / "requirements.txt").write_text(f"{SIX}\n")
    result = build(tmp_path, source, find_links=str(wheels), tools=[UV],
                   index_url="http://127.0.0.1:9/simple")
    assert result.get("failed") is not True, result
    assert members(result["archive"])["slipway-requirements.txt"].decode().split() == [SIX]
    assert result["tools_missing"] == [UV]
    assert result["tools"] == []


def test_dependencies_that_need_a_newer_python_say_which_and_what_to_set(tmp_path):
    python = interpreter()
    assert version_of(python) < (3, 12), "this test needs the host's Python 3.11 (Debian 12)"
    source = tmp_path / "app"
    source.mkdir()
    (source / "requirements.txt").write_text("Django>=6.0,<6.1\n")
    result = build(tmp_path, source)
    assert result["failed"] is True
    assert "need another Python" in result["msg"]
    assert ">=3.12" in result["msg"]
    assert "app_python" in result["msg"]
    assert not Path(result["archive"]).exists()


def test_an_index_the_build_host_cannot_reach_fails_before_pip_runs(tmp_path):
    source = tmp_path / "app"
    source.mkdir()
    (source / "requirements.txt").write_text(f"{SIX}\n")
    result = build(tmp_path, source, index_url="http://127.0.0.1:9/simple")
    assert result["failed"] is True
    assert "cannot reach the package index http://127.0.0.1:9/simple" in result["msg"]
    assert "app_wheelhouse" in result["msg"]
    assert not list((tmp_path / "cache").glob("buildenv-*"))
