from __future__ import annotations

import threading

import pytest
from ansible_collections.slipway.django.plugins.callback.deploy_history import COLLECTION_DIR

from slipway.history.secrets import (
    NO_LOG_PLACEHOLDER,
    collection_role_paths,
    looks_secret,
    mask_secret_names,
    no_log_argument_values,
    no_log_options,
    no_log_task_values,
    role_no_log_options,
    secret_values,
    template_outputs,
)
from slipway.history.store import (
    MASK,
    SecretScrubber,
    url_passwords,
)

PEM = ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
       "-----END OPENSSH PRIVATE KEY-----")


@pytest.mark.parametrize(("name", "secret"), [
    ("app_db_password", True),
    ("ansible_become_pass", True),
    ("DJANGO_SECRET_KEY", True),
    ("github_token", True),
    ("ssh_private_key_file", True),
    ("aws_credentials", True),
    ("app_name", False),
    ("release_id", False),
    ("passenger_count", True),  # over-masking is the safe side
])
def test_secret_names_are_recognised(name, secret):
    assert looks_secret(name) is secret


def test_names_a_spec_marks_no_log_are_secret_too():
    assert looks_secret("console_history_db", {"console_history_db"})
    assert not looks_secret("console_history_db", {"app_db_password"})


def test_secret_values_are_found_at_any_depth_under_secret_names_and_in_urls():
    variables = {
        "app_name": "shop",
        "db_password": "Sup3rSecret",
        "users": [{"name": "admin", "password": "adm1n-pw"}],
        "vault": {"api_key": ["k-111111", "k-222222"]},
        "templated_secret": "{{ lookup('env', 'X') }}",
        "mirror": "https://mirror:Mirr0r-pw@pkgs.example.com/simple",
        "templated_mirror": "https://mirror:{{mirror_pw}}@pkgs.example.com/simple",
        "signing_salt": "Salt-123456",
    }

    assert secret_values(variables, secret_names={"signing_salt"}) == {
        "Sup3rSecret", "adm1n-pw", "k-111111", "k-222222", "Mirr0r-pw", "Salt-123456"}


def test_templated_secrets_are_rendered_when_a_renderer_is_given():
    variables = {"db_password": "{{ generated }}", "token": "{{ broken }}"}

    def render(text):
        if "broken" in text:
            raise ValueError("undefined")
        return "Generated-Pw-1"

    assert secret_values(variables, render) == {"Generated-Pw-1"}


def test_mask_secret_names_keeps_the_shape_and_hides_the_values():
    assert mask_secret_names({"deploy_description": "x", "db": {"password": "p", "port": 5432},
                              "tokens": ["a"], "salt": "s"}, {"salt"}) == {
        "deploy_description": "x", "db": {"password": MASK, "port": 5432}, "tokens": MASK,
        "salt": MASK}


@pytest.mark.parametrize(("text", "expected"), [
    ("login with hunter2-pw failed", f"login with {MASK} failed"),
    ("hunter2-pw-extended and hunter2-pw", f"{MASK} and {MASK}"),
    ("nothing to hide", "nothing to hide"),
    ("", ""),
])
def test_scrubber_masks_every_occurrence_longest_first(text, expected):
    scrubber = SecretScrubber()
    scrubber.add({"hunter2-pw", "hunter2-pw-extended"})

    assert scrubber.scrub(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("store postgresql://app:S3cret@db:5432/shop ok",
     f"store postgresql://app:{MASK}@db:5432/shop ok"),
    ("postgresql://app:p@ss/w@db/shop", f"postgresql://app:{MASK}@db/shop"),
    ('{"url": "redis://:r3dis@cache:6379/0"}', f'{{"url": "redis://:{MASK}@cache:6379/0"}}'),
    ("clone https://ghp_abcdef123@github.com/o/r.git", f"clone https://{MASK}@github.com/o/r.git"),
    ("see https://example.com/a/b?page=2", "see https://example.com/a/b?page=2"),
    ("mail ops@example.com", "mail ops@example.com"),
    (f"key {PEM} end", f"key {MASK} end"),
    ("-----BEGIN RSA PRIVATE KEY-----\\nMIIEow [cut", MASK),
    ("-----BEGIN CERTIFICATE-----\\nMIIB", "-----BEGIN CERTIFICATE-----\\nMIIB"),
    ("PGPASSWORD=hunter22 psql", f"PGPASSWORD={MASK} psql"),
    ('{"db_password": "two words", "port": 5432}', f'{{"db_password": "{MASK}", "port": 5432}}'),
    ("api_token: 'abc def'", f"api_token: '{MASK}'"),
    ("Secret_Key: x1", f"Secret_Key: {MASK}"),
    ("https://h/x?token=abc&page=2", f"https://h/x?token={MASK}&page=2"),
    ('login_password: "{{ app_db_password }}"', 'login_password: "{{ app_db_password }}"'),
    ("when: password == 'x'", "when: password == 'x'"),
    ("TASK [Set the admin password] ***", "TASK [Set the admin password] ***"),
])
def test_scrubber_masks_what_has_the_shape_of_a_secret_and_keeps_the_rest(text, expected):
    assert SecretScrubber().scrub(text) == expected


def test_scrubber_ignores_values_too_short_to_mask_safely():
    scrubber = SecretScrubber({"abc", "", "abcd"})

    assert scrubber.scrub("abc abcd") == f"abc {MASK}"


def test_scrubber_scrubs_nested_payloads_and_leaves_other_values_alone():
    scrubber = SecretScrubber()
    scrubber.add({"s3cr3t-value"})

    assert scrubber.scrub_all({"message": "s3cr3t-value!", "changed": 1,
                               "rows": [{"task": "use s3cr3t-value"}]}) == {
        "message": f"{MASK}!", "changed": 1, "rows": [{"task": f"use {MASK}"}]}


def test_scrubber_learns_while_another_thread_scrubs():
    scrubber = SecretScrubber()
    values = [f"secret-{number:04d}" for number in range(200)]
    results = []

    def scrub():
        for _attempt in range(200):
            results.append(scrubber.scrub("secret-0000 and secret-0199"))

    reader = threading.Thread(target=scrub)
    reader.start()
    for value in values:
        scrubber.add({value})
    reader.join()

    assert len(results) == 200  # no scrub failed half-way through a swap
    assert set(results) <= {"secret-0000 and secret-0199", f"{MASK} and secret-0199",
                            f"{MASK} and {MASK}"}
    assert scrubber.scrub("secret-0000 and secret-0199") == f"{MASK} and {MASK}"


def test_url_passwords_are_found_as_written_and_decoded():
    assert url_passwords("a postgresql://u:p%40ss@h/db and redis://:r3dis@c/0") == {
        "p%40ss", "p@ss", "r3dis"}
    assert url_passwords("https://example.com/x") == set()


def test_no_log_options_are_found_in_suboptions_too():
    options = {
        "app_name": {"type": "str"},
        "app_db_password": {"type": "str", "no_log": True},
        "app_users": {"type": "list", "elements": "dict", "options": {
            "name": {"type": "str"}, "pin": {"type": "str", "no_log": True}}},
    }

    assert no_log_options(options) == {"app_db_password", "pin"}


def test_role_no_log_options_come_from_every_entry_point_of_the_spec(tmp_path):
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "argument_specs.yml").write_text(
        "argument_specs:\n"
        "  main:\n    options:\n      salt: {type: str, no_log: true}\n"
        "      name: {type: str}\n"
        "  rollback:\n    options:\n      pepper: {type: str, no_log: true}\n")

    assert role_no_log_options(str(tmp_path)) == {"salt", "pepper"}
    assert role_no_log_options(str(tmp_path / "missing")) == frozenset()


def test_the_collection_roles_no_log_options_are_known():
    # The roles directory the callback gives: its own collection's.
    roles = COLLECTION_DIR / "roles"
    names = set().union(*(role_no_log_options(path) for path in collection_role_paths(roles)))

    assert {"app_db_password", "console_history_db"} <= names


def test_module_no_log_arguments_are_taken_from_the_arguments_the_task_passed():
    args = {"url": "http://h/", "url_password": "Mirror-1234", "headers": {"X-Auth": "Hdr-5678"},
            "_ansible_check_mode": False}
    reported = {"url": "http://h/", "url_password": NO_LOG_PLACEHOLDER,
                "headers": {"X-Auth": NO_LOG_PLACEHOLDER}, "timeout": 30}

    assert no_log_argument_values(args, reported) == {"Mirror-1234", "Hdr-5678"}


@pytest.mark.parametrize(("raw", "rendered", "secrets"), [
    ({"_raw_params": "printf %s {{ code }}"}, {"_raw_params": "printf %s Code-1234",
                                               "_ansible_remote_tmp": "~/.ansible/tmp"},
     {"Code-1234"}),
    ({"argv": ["adduser", "{{ admin_user }}"], "stdin": "{{ admin_pin }}"},
     {"argv": ["adduser", "admin"], "stdin": "Pin-99887766"}, {"Pin-99887766"}),
    ({"content": "{{ key }}", "dest": "{{ app_root }}/key", "owner": "{{ app_user }}",
      "mode": "0600"},
     {"content": "Key-Body-99", "dest": "/srv/app/key", "owner": "shop", "mode": "0600"},
     {"Key-Body-99"}),
    ({"password": "literal-pw", "state": "present"}, {"password": "literal-pw",
                                                      "state": "present"}, {"literal-pw"}),
    ({"msg": "{{ item }}"}, {"msg": "{{ item }}"}, set()),  # a loop's own, unrendered result
    ({"env": {"DEBUG": "{{ debug }}", "ROOT": "{{ root }}", "DSN": "{{ dsn }}"}},
     {"env": {"DEBUG": "false", "ROOT": "/srv/app", "DSN": "Dsn-Value-1"}}, {"Dsn-Value-1"}),
])
def test_a_no_log_task_reveals_what_its_templates_rendered_but_not_places_or_states(
        raw, rendered, secrets):
    assert no_log_task_values(rendered, raw) == secrets


@pytest.mark.parametrize(("template", "rendered", "outputs"), [
    ("printf %s {{ code }}", "printf %s Code-1", {"Code-1"}),
    ("{{ a }}", "whole", {"whole"}),
    ("{{ user }}:{{ pw }}@h", "app:Pw-2@h", {"app", "Pw-2", "app:Pw-2@h"}),
    ("{% if x %}{{ y }}{% endif %}", "Y-3", {"Y-3"}),
    ("prefix {{ a }}", "something else", {"something else"}),
])
def test_template_outputs_separate_what_expressions_rendered_from_the_literal_text(
        template, rendered, outputs):
    assert template_outputs(template, rendered) == outputs
