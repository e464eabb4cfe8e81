"""The deploy_history callback, through real ansible-playbook runs, on each store engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from deploy_history_helpers import Project, closed_port, new_run_uuid, wait_for_log

PUBLISHING = """
- name: Deploy the app
  hosts: web
  gather_facts: false
  tasks:
    - name: Build the release
      ansible.builtin.command: "true"
    - name: Skip what is not needed
      ansible.builtin.debug:
        msg: never
      when: false
    - name: Publish the release
      ansible.builtin.set_stats:
        data:
          slipway_release_id: "r20260101"
          slipway_commit: "0123456789abcdef0123456789abcdef01234567"
          slipway_branch: "main"
          slipway_app: "shop"
        per_host: false
        aggregate: false
      run_once: true
"""

FAILING = """
- name: Deploy the app
  hosts: web
  gather_facts: false
  tasks:
    - name: Check the release
      ansible.builtin.fail:
        msg: "the release is broken on {{ inventory_hostname }}"
      when: inventory_hostname == 'web2'
    - name: Carry on where it worked
      ansible.builtin.debug:
        msg: still here
"""

SLOW = """
- name: Deploy slowly
  hosts: web
  gather_facts: false
  tasks:
    - name: Start
      ansible.builtin.debug:
        msg: starting
    - name: Wait for the operator
      ansible.builtin.command: sleep 60
    - name: Never reached
      ansible.builtin.debug:
        msg: done
"""


def everything(project: Project) -> str:
    with project.store() as store:
        return json.dumps(store.dump(), default=str)


def test_successful_run_records_release_environment_hosts_and_tasks(project):
    playbook = project.playbook("deploy", PUBLISHING)

    result = project.run(playbook, "-e", json.dumps({"deploy_description": "Weekly release"}),
                         "--limit", "web*")

    assert result.returncode == 0, result.stdout + result.stderr
    run = project.only_run()
    assert run["status"] == "success"
    assert run["environment"] == "staging"
    assert (run["release_id"], run["branch"], run["app"]) == ("r20260101", "main", "shop")
    assert run["commit_hash"] == "0123456789abcdef0123456789abcdef01234567"
    assert run["description"] == "Weekly release"
    assert run["deployed_by"] == "alice"
    assert run["playbook"] == "deploy.yml"
    assert run["host_limit"] == "web*"
    assert run["inventory"].endswith("inventories/staging/hosts.ini")
    assert run["completed_at"] >= run["started_at"]
    assert "TASK [Build the release]" in run["logs"] and "changed: [web1]" in run["logs"]
    with project.store() as store:
        hosts = {h["host"]: h for h in store.host_summaries(run["id"])}
        tasks = store.task_results(run["id"])
    assert set(hosts) == {"web1", "web2"}
    assert (hosts["web1"]["ok"], hosts["web1"]["changed"], hosts["web1"]["skipped"]) == (2, 1, 1)
    statuses = {(t["host"], t["task"]): (t["status"], t["changed"]) for t in tasks}
    assert statuses[("web2", "Build the release")] == ("ok", 1)
    assert statuses[("web2", "Skip what is not needed")] == ("skipped", 0)
    assert all(t["play"] == "Deploy the app" and t["duration_ms"] >= 0 for t in tasks)


def test_environment_comes_from_the_slipway_environment_variable(tmp_path, store_url):
    project = Project(tmp_path / "p", store_url, group_vars={"slipway_environment": "production"})

    project.run(project.playbook("deploy", PUBLISHING))

    assert project.only_run()["environment"] == "production"


def test_failed_task_marks_the_run_failed_with_its_message(project):
    result = project.run(project.playbook("deploy", FAILING))

    assert result.returncode == 2
    run = project.only_run()
    assert run["status"] == "failed"
    assert "web2: Check the release: the release is broken on web2" in run["error_message"]
    assert run["release_id"] is None and run["commit_hash"] is None and run["branch"] is None
    with project.store() as store:
        hosts = {h["host"]: h for h in store.host_summaries(run["id"])}
        failed = [t for t in store.task_results(run["id"]) if t["status"] == "failed"]
    assert (hosts["web1"]["failed"], hosts["web2"]["failed"]) == (0, 1)
    assert [(t["host"], t["task"]) for t in failed] == [("web2", "Check the release")]


def test_unreachable_host_is_recorded_and_fails_the_run(tmp_path, store_url):
    port = closed_port()
    project = Project(tmp_path / "p", store_url, extra_hosts=(
        f"[lost]\nghost ansible_connection=ssh ansible_host=127.0.0.1 ansible_port={port} "
        "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o ConnectTimeout=3'\n"))
    playbook = project.playbook("deploy", """
        - name: Deploy everywhere
          hosts: all
          gather_facts: false
          tasks:
            - name: Touch base
              ansible.builtin.ping:
        """)

    project.run(playbook)

    run = project.only_run()
    assert run["status"] == "failed"
    with project.store() as store:
        hosts = {h["host"]: h for h in store.host_summaries(run["id"])}
        ghost = [t for t in store.task_results(run["id"]) if t["host"] == "ghost"]
    assert hosts["ghost"]["unreachable"] == 1 and hosts["web1"]["ok"] == 1
    assert [t["status"] for t in ghost] == ["unreachable"]
    assert "UNREACHABLE" in run["logs"]


def test_secrets_reach_no_column_of_any_table(tmp_path, store_url):
    hidden = "Hidden-Sauce-8812"  # used only by no_log tasks, under an innocent name
    password = "Db-Pass-5521"  # an extra var leaked by a task without no_log
    project = Project(tmp_path / "p", store_url,
                      group_vars={"api_token": "Tok-en-7712", "recipe": hidden})
    playbook = project.playbook("deploy", """
        - name: Deploy with secrets
          hosts: web
          gather_facts: false
          tasks:
            - name: Write the settings
              ansible.builtin.command: "echo {{ recipe }}"
              no_log: true
            - name: Connect to the database
              ansible.builtin.debug:
                msg: "connecting with {{ db_password }} and {{ api_token }}"
            - name: Fail loudly with the secret
              ansible.builtin.fail:
                msg: "login failed for {{ db_password }} / {{ recipe }}"
              no_log: true
              ignore_errors: true
        """)

    result = project.run(playbook, "-e", f"db_password={password}")

    assert password in result.stdout  # the terminal shows it; the store must not
    dump = everything(project)
    for secret in (hidden, password, "Tok-en-7712"):
        assert secret not in dump
    run = project.only_run()
    assert run["status"] == "success"
    assert "connecting with ********" in run["logs"]
    assert json.loads(run["extra_vars"])["db_password"] == "********"


def test_run_stopped_by_sigterm_is_marked_interrupted(project):
    run_uuid = new_run_uuid()
    process = project.start(project.playbook("slow", SLOW), run_uuid)
    wait_for_log(project, run_uuid, "TASK [Wait for the operator]")

    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)

    run = project.only_run()
    assert run["status"] == "interrupted"
    assert "SIGTERM" in run["error_message"]
    assert run["completed_at"] is not None


def test_run_stopped_by_ctrl_c_is_marked_interrupted(project):
    run_uuid = new_run_uuid()
    process = project.start(project.playbook("slow", SLOW), run_uuid)
    wait_for_log(project, run_uuid, "TASK [Wait for the operator]")

    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)

    assert project.only_run()["status"] == "interrupted"


def test_run_killed_outright_is_marked_interrupted_by_the_next_run(project):
    run_uuid = new_run_uuid()
    process = project.start(project.playbook("slow", SLOW), run_uuid)
    wait_for_log(project, run_uuid, "TASK [Wait for the operator]")
    process.kill()
    process.wait(timeout=60)
    with project.store() as store:
        assert store.find_run(run_uuid)["status"] == "running"

    project.run(project.playbook("deploy", PUBLISHING))

    with project.store() as store:
        killed = store.find_run(run_uuid)
    assert killed["status"] == "interrupted"
    assert "killed" in killed["error_message"]
    assert [run["status"] for run in project.runs()] == ["success", "interrupted"]


def test_cancelled_run_keeps_its_status_when_the_process_stops(project):
    run_uuid = new_run_uuid()
    process = project.start(project.playbook("slow", SLOW), run_uuid)
    run = wait_for_log(project, run_uuid, "TASK [Wait for the operator]")
    with project.store() as store:
        assert store.mark_cancelled(run["id"], "cancelled from the console")

    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)

    run = project.only_run()
    assert run["status"] == "cancelled"
    assert "TASK [Wait for the operator]" in run["logs"]


def _break(store_url: str, tmp_path: Path) -> tuple[str, object]:
    """A URL for the same store that cannot be reached yet, and how to make it reachable."""
    if "://" not in store_url:
        blocker = Path(store_url).parent
        blocker.parent.mkdir(parents=True, exist_ok=True)
        blocker.write_text("a file where the store's directory should be\n")

        def repair():
            blocker.unlink()
        return store_url, repair
    scheme, rest = store_url.split("://", 1)
    credentials, location = rest.split("@", 1)
    address, database = location.split("/", 1)
    missing = f"{database}_later"

    def repair():
        if scheme == "postgresql":
            import psycopg2
            admin = psycopg2.connect(f"{scheme}://{credentials}@{address}/postgres")
            admin.autocommit = True
            with admin.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{missing}"')
        else:
            import pymysql
            user, password = credentials.split(":", 1)
            host, port = address.split(":")
            admin = pymysql.connect(host=host, port=int(port), user=user, password=password,
                                    autocommit=True)
            with admin.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE `{missing}`")
        admin.close()
    return f"{scheme}://{credentials}@{address}/{missing}", repair


def test_unreachable_store_spools_the_run_and_the_next_run_writes_it(tmp_path, store_url):
    url, repair = _break(store_url, tmp_path)
    project = Project(tmp_path / "p", url)

    first = project.run(project.playbook("deploy", PUBLISHING))

    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count("unavailable") + first.stderr.count("unavailable") == 1
    assert list(project.spool_dir.rglob("*.jsonl"))
    repair()

    second = project.run(project.playbook("deploy", FAILING))

    assert second.returncode == 2
    assert not list(project.spool_dir.rglob("*.jsonl"))
    runs = project.runs()
    assert sorted(run["status"] for run in runs) == ["failed", "success"]
    spooled = next(run for run in runs if run["status"] == "success")
    with project.store() as store:
        assert store.get_run(spooled["id"])["release_id"] == "r20260101"
        assert len(store.task_results(spooled["id"])) == 5
        assert "PLAY RECAP" in store.get_run(spooled["id"])["logs"]


def test_concurrent_runs_lose_no_rows(project):
    playbook = project.playbook("deploy", PUBLISHING)
    processes = [subprocess.Popen(project.argv(playbook), cwd=project.root, env=project.env(),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for _ in range(4)]

    assert [process.wait(timeout=180) for process in processes] == [0, 0, 0, 0]

    runs = project.runs()
    assert [run["status"] for run in runs] == ["success"] * 4
    with project.store() as store:
        assert [len(store.task_results(run["id"])) for run in runs] == [5] * 4


def test_cli_lists_filters_pages_shows_logs_and_prunes(project):
    project.run(project.playbook("deploy", PUBLISHING), "-e", "deploy_description=first")
    project.run(project.playbook("broken", FAILING))
    failed_id = next(r["id"] for r in project.runs() if r["status"] == "failed")

    listed = project.cli("--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["status"] for r in json.loads(listed.stdout)["runs"]] == ["failed", "success"]
    failed_only = json.loads(project.cli("list", "--status", "failed", "--json").stdout)
    assert [r["id"] for r in failed_only["runs"]] == [failed_id]
    assert json.loads(project.cli("list", "--env", "nowhere", "--json").stdout)["runs"] == []
    assert len(json.loads(project.cli("--since", "1h", "--json").stdout)["runs"]) == 2
    assert json.loads(project.cli("--since", "2999-01-01", "--json").stdout)["runs"] == []
    second_page = json.loads(project.cli("--limit", "1", "--page", "2", "--json").stdout)
    assert (second_page["pages"], second_page["total"]) == (2, 2)
    assert [r["status"] for r in second_page["runs"]] == ["success"]
    table = project.cli("list").stdout
    assert "staging" in table and "r20260101" in table and "page 1 of 1 (2 runs)" in table

    shown = project.cli("show", str(failed_id))
    assert "Check the release" in shown.stdout and "web2" in shown.stdout
    detail = json.loads(project.cli("show", str(failed_id), "--json").stdout)
    assert {h["host"]: h["failed"] for h in detail["hosts"]} == {"web1": 0, "web2": 1}
    assert len(detail["tasks"]) == 3
    assert "fatal: [web2]: FAILED!" in project.cli("log", str(failed_id)).stdout
    assert project.cli("show", "999999").returncode == 1

    assert json.loads(project.cli("prune", "--older-than", "1h", "--json").stdout) == {"pruned": 0}
    assert project.cli("prune", "--older-than", "0s").stdout.strip() == "pruned 2 runs"
    assert json.loads(project.cli("--json").stdout)["runs"] == []
    with project.store() as store:
        pruned = store.get_run(failed_id)
    assert (pruned["is_deleted"], pruned["logs"]) == ("Y", None)


def test_callback_never_fails_a_run_when_it_cannot_even_spool(tmp_path):
    project = Project(tmp_path / "p", f"postgresql://nobody:x@127.0.0.1:{closed_port()}/none")
    project.spool_dir.parent.mkdir(parents=True, exist_ok=True)
    project.spool_dir.write_text("not a directory")

    result = project.run(project.playbook("deploy", PUBLISHING))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "they are lost" in result.stdout + result.stderr
    assert os.path.isfile(project.spool_dir)


def test_each_loop_item_is_logged_as_it_ends_and_no_log_items_are_hidden(project):
    playbook = project.playbook("loop", """
        - name: Deploy in steps
          hosts: web1
          gather_facts: false
          tasks:
            - name: Run each step
              ansible.builtin.command: "echo {{ item }}"
              loop: [migrate, collectstatic]
              changed_when: item == 'migrate'
            - name: Write each secret
              ansible.builtin.debug:
                msg: "{{ item }}"
              loop: [hunter2-in-a-loop]
              no_log: true
        """)

    result = project.run(playbook)

    assert result.returncode == 0, result.stdout + result.stderr
    run = project.only_run()
    assert "changed: [web1] => (item=migrate)\n" in run["logs"]
    assert "ok: [web1] => (item=collectstatic)\n" in run["logs"]
    assert "ok: [web1] => (item=(censored))\n" in run["logs"]
    assert "hunter2-in-a-loop" not in everything(project)
    with project.store() as store:
        tasks = [t["task"] for t in store.task_results(run["id"])]
    assert tasks == ["Run each step", "Write each secret"]


def test_each_task_records_its_role_and_tasks_file(project):
    tasks_dir = project.root / "roles" / "app" / "tasks"
    tasks_dir.mkdir(parents=True)
    (tasks_dir / "migrate.yml").write_text(
        "---\n- name: Migrate\n  ansible.builtin.debug:\n    msg: migrating\n")
    playbook = project.playbook("deploy", """
        - name: Deploy the app
          hosts: web
          gather_facts: false
          tasks:
            - name: Outside any role
              ansible.builtin.debug:
                msg: plain
            - name: The migrations
              ansible.builtin.import_role:
                name: app
                tasks_from: migrate
        """)

    result = project.run(playbook)

    assert result.returncode == 0, result.stdout + result.stderr
    with project.store() as store:
        tasks = store.task_results(project.only_run()["id"])
    origins = {(t["host"], t["task"]): (t["role"], t["task_file"]) for t in tasks}
    assert origins[("web1", "Outside any role")] == (None, "deploy.yml")
    assert origins[("web1", "app : Migrate")] == ("app", "migrate.yml")
