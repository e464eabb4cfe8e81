"""slipway.django.db_backup run through ansible-playbook against real PostgreSQL and MariaDB."""

from __future__ import annotations

import json
import os
from pathlib import Path

from db_backup_helpers import run_module, succeeded, tree

METADATA = {"app": "shop", "from_release": "r1", "to_release": "r2", "run_id": "run-7"}


def test_backup_is_verified_private_and_listed_with_its_metadata(app_db, dest_dir):
    result = succeeded(run_module(**app_db.module_args(dest_dir=str(dest_dir),
                                                       metadata=METADATA)))
    backup = result["backup"]
    assert result["changed"] is True
    assert backup["verified"] is True and backup["metadata"] == METADATA
    assert backup["size"] > 0 and backup["db_size"] > 0
    path = Path(backup["path"])
    assert path.parent == dest_dir and path.exists()
    assert path.name == backup["id"] + (".pgdump" if app_db.engine == "postgresql"
                                        else ".sql.gz")
    assert (dest_dir.stat().st_mode & 0o7777, dest_dir.stat().st_uid) == (0o700, 0)
    for name, (mode, uid, gid, _, _) in tree(dest_dir).items():
        assert (uid, gid) == (0, 0), name
        assert mode == (0o700 if (dest_dir / name).is_dir() else 0o600), name
    assert not [name for name in os.listdir(dest_dir) if name.endswith(".partial")]
    info = json.loads(Path(backup["metadata_path"]).read_text())
    assert (info["engine"], info["db"], info["metadata"]) == (app_db.engine, app_db.name,
                                                               METADATA)
    assert info["verified"] is True and info["files"]
    assert app_db.password not in Path(backup["metadata_path"]).read_text()
    listed = succeeded(run_module(engine=app_db.engine, db=app_db.name, action="list",
                                  dest_dir=str(dest_dir)))
    assert [(entry["id"], entry["verified"], entry["metadata"])
            for entry in listed["backups"]] == [(backup["id"], True, METADATA)]
