"""wheelhouse: the app server's requirement is added only when the app's wheels lack it."""

from __future__ import annotations

import tarfile
from pathlib import Path

from ansible_collections.slipway.django.plugins.modules import wheelhouse


def wheels(directory: Path, *names: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tools").mkdir(exist_ok=True)
    for name in names:
        (directory / name).write_bytes(b"")
    return directory


def test_a_server_the_app_lacks_is_missing(tmp_path):
    found = wheels(tmp_path, "Django-6.0.1-py3-none-any.whl", "asgiref-3.9.1-py3-none-any.whl")
    assert wheelhouse.missing(["gunicorn==23.0.0"], str(found)) == ["gunicorn==23.0.0"]


def test_a_server_the_app_pins_is_left_as_the_app_pins_it(tmp_path):
    found = wheels(tmp_path, "Django-6.0.1-py3-none-any.whl", "gunicorn-22.0.0-py3-none-any.whl")
    assert wheelhouse.missing(["gunicorn==23.0.0"], str(found)) == []


def test_names_compare_as_packaging_does(tmp_path):
    found = wheels(tmp_path, "uvicorn_worker-0.4.0-py3-none-any.whl",
                   "uvicorn-0.38.0-py3-none-any.whl")
    assert wheelhouse.missing(["Uvicorn-Worker==0.4.0", "uvicorn==0.38.0", "gunicorn==23.0.0"],
                              str(found)) == ["gunicorn==23.0.0"]


def test_a_cached_archive_still_says_what_was_added(tmp_path):
    found = wheels(tmp_path / "w", "gunicorn-23.0.0-py3-none-any.whl")
    (found / wheelhouse.ADDED_NAME).write_text("gunicorn==23.0.0\n")
    archive = tmp_path / "key.tar"
    with tarfile.open(archive, "w") as tar:
        for path in sorted(found.iterdir()):
            tar.add(path, arcname=path.name)
    contents = wheelhouse.archive_contents(str(archive))
    assert contents["added"] == ["gunicorn==23.0.0"]
    assert contents["wheels"] == 1
