"""The five app versions: deterministic trees, migrations that match the models, reverse
cleanly, and leave v1 code working on the migrated schema."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import app_versions
import pytest
from ansible_collections.slipway.django.plugins.modules import package_source

EXCLUDE = ["__pycache__", "*.pyc"]
CHECK_SETTINGS = """\
SECRET_KEY = "app-versions-test"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "production", "equip"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": %r}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
"""


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    return app_versions.write_versions(tmp_path_factory.mktemp("versions"))


def release_id(tree: Path) -> str:
    return package_source.tree_digest(str(tree), package_source.walk_files(str(tree), EXCLUDE))


def django(tree: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Run a django-admin command on tree's apps, against tmp_path/db.sqlite3."""
    settings_dir = tmp_path / "settings"
    settings_dir.mkdir(exist_ok=True)
    (settings_dir / "check_settings.py").write_text(CHECK_SETTINGS % str(tmp_path / "db.sqlite3"))
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{settings_dir}",
           "DJANGO_SETTINGS_MODULE": "check_settings", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "django", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)


def test_every_run_writes_the_same_release_ids(trees, tmp_path):
    again = app_versions.write_versions(tmp_path)
    ids = {version: release_id(tree) for version, tree in trees.items()}
    assert {version: release_id(tree) for version, tree in again.items()} == ids
    assert len(set(ids.values())) == 5


def test_v1_is_the_example_app_with_its_release_id(trees):
    assert release_id(trees["v1"]) == release_id(app_versions.EXAMPLE_APP)


@pytest.mark.parametrize("version", app_versions.VERSIONS)
def test_makemigrations_finds_nothing_missing(trees, tmp_path, version):
    result = django(trees[version], tmp_path, "makemigrations", "--check", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No changes detected" in result.stdout


def test_v2_migrations_import_and_are_planned_after_v1s(trees, tmp_path):
    result = django(trees["v2"], tmp_path, "showmigrations", "production", "--plan")
    assert result.returncode == 0, result.stderr
    planned = [line.split()[-1] for line in result.stdout.splitlines() if "production." in line]
    assert planned == ["production.0001_initial", "production.0002_shift",
                       "production.0003_workorder_due_date"]


def test_v1_code_keeps_working_on_the_v2_schema_and_v2_migrations_reverse(trees, tmp_path):
    assert django(trees["v2"], tmp_path, "migrate", "--no-input").returncode == 0
    v1_writes = django(trees["v1"], tmp_path, "shell", "--no-imports", "--command", (
        "from production.models import ProductionLine, WorkOrder\n"
        "line = ProductionLine.objects.create(code='L1', name='Line 1')\n"
        "WorkOrder.objects.create(line=line, number='WO-1', quantity=5)\n"
        "print(WorkOrder.objects.get(number='WO-1').quantity)"))
    assert v1_writes.returncode == 0, v1_writes.stderr
    assert v1_writes.stdout.split() == ["5"]
    v2_reads = django(trees["v2"], tmp_path, "shell", "--no-imports", "--command", (
        "from production.models import Shift, WorkOrder\n"
        "print(WorkOrder.objects.get(number='WO-1').due_date, Shift.objects.count())"))
    assert v2_reads.stdout.split() == ["None", "0"], v2_reads.stderr

    back = django(trees["v2"], tmp_path, "migrate", "production", "0001", "--no-input")
    assert back.returncode == 0, back.stderr
    assert "Unapplying production.0003_workorder_due_date... OK" in back.stdout
    assert "Unapplying production.0002_shift... OK" in back.stdout
    v1_after = django(trees["v1"], tmp_path, "shell", "--no-imports", "--command", (
        "from production.models import WorkOrder\n"
        "print(WorkOrder.objects.get(number='WO-1').quantity)"))
    assert v1_after.stdout.split() == ["5"], v1_after.stderr


def test_later_versions_report_their_version_and_v3_and_v5_fail_their_health_check(trees):
    assert not (trees["v1"] / "VERSION").exists()
    for version in ("v2", "v3", "v4", "v5"):
        assert (trees[version] / "VERSION").read_text() == f"{version}\n"
        health = (trees[version] / "config" / "health.py").read_text()
        compile(health, str(trees[version] / "config" / "health.py"), "exec")
        assert '"release": getattr(settings, "RELEASE_ID", None), "version": _version()' in health
        assert ("status=500)" in health) == (version in ("v3", "v5"))
    assert (trees["v5"] / "production" / "migrations" / "0004_uppercase_line_names.py").exists()


def test_v4_migration_changes_data_and_cannot_be_reversed(trees, tmp_path):
    assert django(trees["v2"], tmp_path, "migrate", "--no-input").returncode == 0
    django(trees["v2"], tmp_path, "shell", "--no-imports", "--command", (
        "from production.models import ProductionLine\n"
        "ProductionLine.objects.create(code='L1', name='line one')"))

    forward = django(trees["v4"], tmp_path, "migrate", "--no-input")
    assert forward.returncode == 0, forward.stderr
    names = django(trees["v4"], tmp_path, "shell", "--no-imports", "--command", (
        "from production.models import ProductionLine\n"
        "print(ProductionLine.objects.get(code='L1').name)"))
    assert names.stdout.split() == ["LINE", "ONE"], names.stderr
    back = django(trees["v4"], tmp_path, "migrate", "production", "0003", "--no-input")
    assert back.returncode != 0
    assert "is not reversible" in back.stdout + back.stderr
    assert (trees["v4"] / "VERSION").read_text() == "v4\n"
