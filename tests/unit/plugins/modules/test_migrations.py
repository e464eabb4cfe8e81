"""The migrations module's documentation, argument spec and result helpers stay in step."""

from __future__ import annotations

import pytest
import yaml
from ansible_collections.slipway.django.plugins.module_utils import django_migrations as mu
from ansible_collections.slipway.django.plugins.modules import migrations


def test_documented_options_match_the_argument_spec():
    documented = yaml.safe_load(migrations.DOCUMENTATION)["options"]
    spec = migrations.argument_spec()
    assert set(documented) == set(spec)
    for name, option in spec.items():
        doc = documented[name]
        assert doc["type"] == option["type"], name
        assert doc.get("default") == option.get("default"), name
        assert doc.get("choices") == option.get("choices"), name
        assert bool(doc.get("required")) == bool(option.get("required")), name


def test_every_returned_key_is_documented_with_a_sample():
    returned = yaml.safe_load(migrations.RETURN)
    for key in (*migrations.ANSWER_KEYS, "changed", "msg"):
        assert {"description", "returned", "type", "sample"} <= set(returned[key]), key


@pytest.mark.parametrize(("text", "expected"), [
    ('os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")', "config.settings"),
    ("os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mes_config.settings.prod')",
     "mes_config.settings.prod"),
    ("import sys", None),
])
def test_settings_default_is_read_from_manage_py(text, expected):
    assert mu.settings_from_manage_py(text) == expected


def test_missing_virtualenv_is_reported_with_what_to_do(tmp_path):
    with pytest.raises(mu.InputError, match="does not exist; point virtualenv"):
        mu.python_for(str(tmp_path / "nope"), lambda name: None)
    with pytest.raises(mu.InputError, match="has no bin/python"):
        mu.python_for(str(tmp_path), lambda name: None)


def test_without_virtualenv_python3_from_path_is_used():
    assert mu.python_for(None, {"python3": "/usr/bin/python3"}.get) == "/usr/bin/python3"


def test_project_without_manage_py_is_rejected(tmp_path):
    with pytest.raises(mu.InputError, match="holds no manage.py"):
        mu.check_project(str(tmp_path))


def test_helper_answer_without_json_quotes_the_helper_stderr():
    with pytest.raises(mu.InputError, match="SyntaxError: bad"):
        mu.parse_helper_answer("/venv/bin/python", 1, "", "Traceback\nSyntaxError: bad\n")


def test_diff_shows_only_rows_removed_and_added():
    diff = mu.rows_diff(["a.0001", "b.0001"], ["a.0001", "c.0001", "c.0002"])
    assert (diff["before"], diff["after"]) == ("b.0001\n", "c.0001\nc.0002\n")


def test_helper_source_is_the_standalone_helper_script():
    source = mu.helper_source()
    assert "def main():" in source
    assert "ansible" not in source.split('"""', 2)[2].split("def ", 1)[0]


@pytest.mark.parametrize(("action", "check_mode", "verb"), [
    ("migrate", False, "did"), ("migrate", True, "would do"),
    ("diagnose", False, "migrate would do"),
])
def test_summary_says_what_was_or_would_be_done(action, check_mode, verb):
    answer = {"plan": [{"action": "apply"}, {"action": "fake_apply"}], "pending": ["a.1"]}
    assert mu.summary(answer, action, check_mode).endswith(f"{verb}: 1 apply, 1 fake_apply.")
