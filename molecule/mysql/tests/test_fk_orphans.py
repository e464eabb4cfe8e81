"""Foreign-key orphans as a deploy step, on MariaDB, in the shape of a seed's update script: a
legacy table without its foreign key holds rows whose parent is gone. A deploy with
app_fk_orphans counts them after the migrations (its --stats) and keeps the counts in the
release's record; one with app_fk_orphans_action: archive moves them into an archive table after
the deploy's verified backup and counts again (its --verify)."""

import json

from test_uv_lock import CURRENT, deploy_code_change

RELATIONS = [{"table": "legacy_items", "column": "order_id", "references_table": "legacy_orders"}]
LINE = ("legacy_items.order_id -> legacy_orders.id: 5 orphans of 200 rows "
        "(first: 40, 80, 120, 160, 200)")


def mysql(host, sql: str) -> str:
    return host.check_output("mysql -N -B shop -e %s", sql)


def status(host) -> dict:
    return json.loads(host.file(f"{CURRENT}/.slipway-status.json").content_string)


def output(result) -> str:
    return " ".join((result.stdout + result.stderr).split())


def test_orphans_are_counted_after_the_migrations_and_kept_in_the_release_record(host):
    mysql(host, """
        CREATE TABLE legacy_orders (id INT PRIMARY KEY) ENGINE=InnoDB;
        CREATE TABLE legacy_items (id INT PRIMARY KEY, order_id INT NOT NULL) ENGINE=InnoDB;
        INSERT INTO legacy_orders WITH RECURSIVE s(n) AS (
            SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 100) SELECT n FROM s;
        INSERT INTO legacy_items WITH RECURSIVE s(n) AS (
            SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 200)
            SELECT n, IF(n % 40 = 0, 1000 + n, n % 100 + 1) FROM s;
    """)

    result = deploy_code_change("uv-app-orphans-report", "-e",
                                json.dumps({"app_fk_orphans": RELATIONS}))

    assert result.returncode == 0, output(result)[-8000:]
    assert LINE in output(result)
    assert status(host)["fk_orphans"] == [
        {"relation": "legacy_items.order_id -> legacy_orders.id", "orphans": 5, "rows": 200}]
    assert mysql(host, "SELECT COUNT(*) FROM legacy_items") == "200"


def test_archive_moves_the_orphans_after_a_verified_backup_and_none_is_left(host):
    result = deploy_code_change("uv-app-orphans-archive", "-e", json.dumps(
        {"app_fk_orphans": RELATIONS, "app_fk_orphans_action": "archive"}))

    text = output(result)
    assert result.returncode == 0, text[-8000:]
    assert f"{LINE}; archived 5 into legacy_items_orphans" in text
    assert "legacy_items.order_id -> legacy_orders.id: 0 orphans of 195 rows" in text
    assert mysql(host, "SELECT COUNT(*) FROM legacy_items") == "195"
    assert mysql(host, "SELECT GROUP_CONCAT(id ORDER BY id) FROM legacy_items_orphans") \
        == "40,80,120,160,200"
    record = status(host)
    assert record["fk_orphans"] == [
        {"relation": "legacy_items.order_id -> legacy_orders.id", "orphans": 5, "rows": 200,
         "archived": 5, "left": 0}]
    # The cleaning ran after this deploy's backup, which holds the orphans.
    backup = json.loads(host.check_output(f"cat /var/backups/shop/{record['backup']}.json"))
    assert backup["verified"] is True
