"""ansible-playbook's own output, which the console keeps when the callback recorded nothing,
goes through the same scrubber as the callback's records."""

from __future__ import annotations

from pathlib import Path

MIRROR_PASSWORD = "Mirror-Pass-6610"
DB_PASSWORD = "Plain-Pw-1234"


def test_output_of_a_run_that_failed_before_ansible_was_up_is_scrubbed(fresh_site):
    # A YAML error: Ansible prints the lines around it, secrets included, before any play.
    (fresh_site.root / "broken.yml").write_text(
        "- name: Broken\n"
        "  hosts: app\n"
        "  vars:\n"
        "    release_notes: see the wiki\n"
        f"    mirror_url: https://mirror:{MIRROR_PASSWORD}@pkgs.example.com/simple\n"
        f"    broken: {{db_password: {DB_PASSWORD}\n"
        "  tasks: []\n")
    with fresh_site.api("alice") as client:
        response = client.post("/api/v1/deploy/trigger", json={"environment": "broken"})
    assert response.status_code == 201, response.text

    assert fresh_site.wait_for(response.json()["id"])["status"] == "failed"

    with fresh_site.store() as store:
        log = store.get_run(response.json()["id"])["logs"]
    assert "mirror_url: https://mirror:********@pkgs.example.com/simple" in log
    assert "db_password: ********" in log
    raw = b"".join(Path(fresh_site.store_url + suffix).read_bytes()
                   for suffix in ("", "-wal") if Path(fresh_site.store_url + suffix).exists())
    assert MIRROR_PASSWORD.encode() not in raw and DB_PASSWORD.encode() not in raw
