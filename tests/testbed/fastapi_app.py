"""Write three versions of a FastAPI + SQLAlchemy + Alembic app with an npm-built front end.

    python tests/testbed/fastapi_app.py OUTDIR

The app is not slipway's: it has the shape of seed 001's project (a repository with backend/ and
frontend/, `cd backend` for the Python side, `npm run build` for the front end) and only real
PyPI and npm packages, so a generic Python app deploy (app_framework: python, issue 14) meets
what such a project is, not what slipway's example app happens to be.

OUTDIR/v1  the first release: backend/ (FastAPI app.main:app, SQLAlchemy 2 models users, tasks,
           ai_outputs, issues, task_logs; Alembic revision 001) and frontend/ (npm run build ->
           dist/index.html and dist/app.js, whose text holds "bundle v1");
OUTDIR/v2  v1 plus revision 002 (tasks.priority, which /api/tasks returns and accepts) and the
           front end's "bundle v2";
OUTDIR/v3  v2 plus revision 003, which fails on MariaDB partway: it adds tasks.project_id (DDL
           commits at once on MariaDB) and then a foreign key to a table "projects" that no
           revision creates, so `alembic upgrade head` exits non-zero with alembic_version
           still at 002 and v2's code still working; "bundle v3";
OUTDIR/fastapi-app.json  how slipway deploys it (DEPLOY below) and what each version shows.

The Python project root is backend/, as in the seed (`cd backend`, `sys.path.append(backend)`):
requirements.txt, alembic.ini and the app package live there. slipway ships the whole repository
(the release directory is the repository root, and the units and commands run there), so a
deploy names backend/requirements.txt as app_requirements_file and gives the app two variables
through app_env: PYTHONPATH=backend (uvicorn imports app.main from the release directory) and
ALEMBIC_CONFIG=backend/alembic.ini (Alembic's own variable for its -c default), so that the
migrate command stays the plain `alembic upgrade head`. Both are relative, so each slot's
process resolves them in its own release. Dependencies are a requirements.txt with the direct
dependencies pinned: what such a project most often has (no lock file, no pyproject.toml).

What slipway gives the app, and how the app takes it:
- DATABASE_URL is mysql://USER:PASSWORD@HOST:PORT/NAME (the password URL-encoded). SQLAlchemy
  reads a bare mysql:// as the MySQLdb driver (mysqlclient, which needs a C build); the app
  installs PyMySQL and turns mysql:// and mariadb:// into +pymysql in app/core/database.py, as
  real apps do. Alembic's env.py builds its engine from the same function, never through
  alembic.ini (whose % interpolation would break an encoded password).
- The release id: slipway sets no variable for it. The app answers RELEASE_ID when set (app_env)
  and otherwise the name of the directory its source is in, resolved: a slot's link points at
  /srv/APP/releases/RELEASE_ID (what examples/app does too). /health answers it as "release",
  for app_health_release_field: release. Its path is /health (no trailing slash: FastAPI
  redirects /health/ with a 307, which the gate does not follow), so the deploy sets
  app_health_url to .../health.

Foreign-key orphans like the seed's (ai_outputs rows whose task is gone): ai_outputs.task_id has
no foreign key in the database in any revision (issues and task_logs have theirs, ON DELETE
CASCADE). DELETE /api/tasks/ID removes a task, its issues and logs, and leaves its outputs
behind, so a deploy test makes orphans through the API, and app_fk_orphans (table ai_outputs,
column task_id, references_table tasks) finds them and may add the missing key.

The front end's package-lock.json is a fixture (tests/testbed/fixtures/), made once with npm
(`npm install --package-lock-only --ignore-scripts --omit-lockfile-registry-resolved=false` on
FRONTEND_PACKAGE below): npm tarballs are immutable, so it never goes stale, and nothing here
needs node. Its one dependency, terser (with its own), is pure JavaScript. It is a
devDependency, as build tools are in real projects: a build run with NODE_ENV=production or
--omit=dev would not install it.

The output is deterministic: the same bytes, file modes and names on every run. Existing version
directories are replaced.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import versions_cli
from app_versions import copy_tree, edit, write

HERE = Path(__file__).resolve().parent
LOCK_FIXTURE = HERE / "fixtures" / "fastapi-frontend-package-lock.json"
VERSIONS = ("v1", "v2", "v3")
# The last revision each version's `alembic upgrade head` reaches (v3's fails: 002 stays).
HEADS = {"v1": "001", "v2": "002", "v3": "003"}
MARKERS = {version: f"bundle {version}" for version in VERSIONS}

REQUIREMENTS = """\
fastapi==0.165.0
uvicorn==0.54.0
SQLAlchemy==2.1.9
alembic==1.20.1
PyMySQL==1.2.4
"""

# What a deploy of the app sets (issue 14's names), for the scenario and the tests.
DEPLOY = {
    "app_framework": "python",
    "app_server": "uvicorn",
    "app_asgi_application": "app.main:app",
    "app_requirements_file": "backend/requirements.txt",
    "app_migrate_command": "alembic upgrade head",
    "app_env": {"PYTHONPATH": "backend", "ALEMBIC_CONFIG": "backend/alembic.ini"},
    "app_health_url": "http://127.0.0.1/health",
    "app_health_release_field": "release",
    "app_health_checks": [{"path": "/health", "status": 200},
                          {"path": "/api/tasks", "status": 200}],
    "app_frontend": {"path": "frontend", "build": "npm ci && npm run build", "output": "dist",
                     "url": "/assets/"},
    "app_fk_orphans": [{"table": "ai_outputs", "column": "task_id", "references_table": "tasks"}],
}

README = """\
# Tasks

A task tracker: a FastAPI back end on MariaDB and a small front end.

## Back end

    cd backend
    python -m venv .venv && .venv/bin/pip install -r requirements.txt
    export DATABASE_URL=mysql://tasks:secret@127.0.0.1:3306/tasks
    .venv/bin/alembic upgrade head
    .venv/bin/uvicorn app.main:app --port 8080

`GET /health` checks the database and names the release; `/api/tasks` lists and creates tasks.

## Front end

    cd frontend
    npm ci && npm run build

The build writes `dist/` (index.html and app.js), served under `/assets/`.
"""

GITIGNORE = """\
__pycache__/
*.pyc
.venv/
.env
frontend/node_modules/
frontend/dist/
"""

CONFIG = '''\
"""Settings, from the environment the service runs with."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

# backend/app/core/config.py: the repository's root is three directories up.
SOURCE_ROOT = Path(__file__).resolve().parents[3]
VERSION = "@VERSION@"


@dataclass(frozen=True)
class Settings:
    database_url: str
    release: str
    version: str


@lru_cache
def get_settings() -> Settings:
    # The release: RELEASE_ID when set, else the directory the deploy unpacked the source into.
    return Settings(database_url=os.environ.get("DATABASE_URL", ""),
                    release=os.environ.get("RELEASE_ID") or SOURCE_ROOT.name,
                    version=VERSION)
'''

DATABASE = '''\
"""The database: one engine for the process, one session per request."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

from sqlalchemy import URL, Engine, create_engine, make_url
from sqlalchemy.orm import Session

from app.core.config import get_settings

# A DATABASE_URL names the database, not the driver: SQLAlchemy reads mysql:// as MySQLdb
# (mysqlclient), and this app installs PyMySQL.
DRIVERS = {"mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql"}


def sqlalchemy_url(url: str) -> URL:
    if not url:
        raise RuntimeError("DATABASE_URL is not set")
    parsed = make_url(url)
    driver = DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver) if driver else parsed


@lru_cache
def get_engine() -> Engine:
    return create_engine(sqlalchemy_url(get_settings().database_url), pool_pre_ping=True,
                         pool_recycle=3600)


def get_db() -> Iterator[Session]:
    with Session(get_engine()) as session:
        yield session
'''

MAIN = '''\
"""The API: /health, /api/tasks."""

from fastapi import FastAPI, Response
from sqlalchemy import text

from app.api import tasks
from app.core.config import get_settings
from app.core.database import get_engine

app = FastAPI(title="Tasks")
app.include_router(tasks.router)


@app.get("/")
def index() -> dict:
    return {"app": "tasks", "version": get_settings().version, "frontend": "/assets/"}


@app.get("/health")
def health(response: Response) -> dict:
    settings = get_settings()
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
        database = {"reachable": True}
    except Exception as exc:  # noqa: BLE001 - any failure means unreachable
        database = {"reachable": False, "error": exc.__class__.__name__}
    if not database["reachable"]:
        response.status_code = 503
    return {"status": "ok" if database["reachable"] else "unavailable",
            "release": settings.release, "version": settings.version, "database": database}
'''

TASKS_API = '''\
"""/api/tasks: list, create and delete tasks, and record a task's AI outputs."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.database import get_db
from app.models import AIOutput, Task

router = APIRouter(prefix="/api/tasks", tags=["tasks"])
Db = Annotated[Session, Depends(get_db)]


class TaskIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)


class TaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    status: str
    created_at: datetime


class OutputIn(BaseModel):
    content: str


class OutputOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    task_id: int
    content: str


@router.get("", response_model=list[TaskOut])
def list_tasks(db: Db) -> list[Task]:
    return list(db.scalars(select(Task).order_by(Task.id)))


@router.post("", response_model=TaskOut, status_code=201)
def create_task(body: TaskIn, db: Db) -> Task:
    task = Task(title=body.title)
    db.add(task)
    db.commit()
    db.refresh(task)
    return task


@router.delete("/{task_id}", status_code=204)
def delete_task(task_id: int, db: Db) -> None:
    task = db.get(Task, task_id)
    if task is None:
        raise HTTPException(status_code=404, detail="no such task")
    db.delete(task)
    db.commit()


@router.post("/{task_id}/outputs", response_model=OutputOut, status_code=201)
def add_output(task_id: int, body: OutputIn, db: Db) -> AIOutput:
    if db.get(Task, task_id) is None:
        raise HTTPException(status_code=404, detail="no such task")
    output = AIOutput(task_id=task_id, content=body.content)
    db.add(output)
    db.commit()
    db.refresh(output)
    return output
'''

MODELS_INIT = '''\
"""The tables."""

from app.models.ai_output import AIOutput
from app.models.base import Base
from app.models.issue import Issue
from app.models.task import Task
from app.models.task_log import TaskLog
from app.models.user import User

__all__ = ["AIOutput", "Base", "Issue", "Task", "TaskLog", "User"]
'''

MODEL_BASE = '''\
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass
'''

MODEL_USER = '''\
from datetime import datetime

from sqlalchemy import DateTime, String, func
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128))
    is_admin: Mapped[bool] = mapped_column(default=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
'''

MODEL_TASK = '''\
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="pending", server_default="pending")
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
'''

MODEL_AI_OUTPUT = '''\
from datetime import datetime

from sqlalchemy import DateTime, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class AIOutput(Base):
    __tablename__ = "ai_outputs"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The task's id. The table has no foreign key on it (yet): deleting a task keeps its outputs.
    task_id: Mapped[int] = mapped_column(index=True)
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
'''

MODEL_ISSUE = '''\
from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class Issue(Base):
    __tablename__ = "issues"

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    severity: Mapped[str] = mapped_column(String(20))
    message: Mapped[str] = mapped_column(Text)
'''

MODEL_TASK_LOG = '''\
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class TaskLog(Base):
    __tablename__ = "task_logs"

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    level: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
'''

ALEMBIC_INI = """\
# Alembic. The database is DATABASE_URL's (alembic/env.py reads it); paths are relative to
# this file, so `alembic -c backend/alembic.ini ...` works from the repository's root too.

[alembic]
script_location = %(here)s/alembic
prepend_sys_path = %(here)s
path_separator = os

[loggers]
keys = root,sqlalchemy,alembic

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console
qualname =

[logger_sqlalchemy]
level = WARNING
handlers =
qualname = sqlalchemy.engine

[logger_alembic]
level = INFO
handlers =
qualname = alembic

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
"""

ALEMBIC_ENV = '''\
"""Alembic's environment: the schema of app.models, on the database of DATABASE_URL."""

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool

from app.core.config import get_settings
from app.core.database import sqlalchemy_url
from app.models import Base

if context.config.config_file_name is not None:
    fileConfig(context.config.config_file_name)

target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(url=sqlalchemy_url(get_settings().database_url),
                      target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(sqlalchemy_url(get_settings().database_url), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
'''

ALEMBIC_SCRIPT_MAKO = '''\
"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
'''

REVISION_001 = '''\
"""Initial schema: users, tasks, ai_outputs, issues, task_logs.

Revision ID: 001
Revises:
Create Date: 2026-11-02 09:14:00
"""

import sqlalchemy as sa
from alembic import op

revision = "001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=128), nullable=False),
        sa.Column("is_admin", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("uid"),
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="pending", nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_tasks_user_id"), "tasks", ["user_id"])
    op.create_table(
        "ai_outputs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_ai_outputs_task_id"), "ai_outputs", ["task_id"])
    op.create_table(
        "issues",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("severity", sa.String(length=20), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_issues_task_id"), "issues", ["task_id"])
    op.create_table(
        "task_logs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_task_logs_task_id"), "task_logs", ["task_id"])


def downgrade() -> None:
    op.drop_table("task_logs")
    op.drop_table("issues")
    op.drop_table("ai_outputs")
    op.drop_table("tasks")
    op.drop_table("users")
'''

REVISION_002 = '''\
"""Tasks have a priority.

Revision ID: 002
Revises: 001
Create Date: 2026-11-16 15:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "002"
down_revision = "001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("priority", sa.Integer(), server_default="0",
                                     nullable=False))


def downgrade() -> None:
    op.drop_column("tasks", "priority")
'''

# Broken on purpose: no revision creates "projects", so the foreign key fails on MariaDB after
# the column was added (MariaDB commits each DDL statement: the column stays, 002 stays head).
REVISION_003 = '''\
"""Tasks belong to projects.

Revision ID: 003
Revises: 002
Create Date: 2026-11-24 11:05:00
"""

import sqlalchemy as sa
from alembic import op

revision = "003"
down_revision = "002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("project_id", sa.Integer(), nullable=True))
    op.create_foreign_key("fk_tasks_project_id_projects", "tasks", "projects",
                          ["project_id"], ["id"], ondelete="SET NULL")


def downgrade() -> None:
    op.drop_constraint("fk_tasks_project_id_projects", "tasks", type_="foreignkey")
    op.drop_column("tasks", "project_id")
'''

FRONTEND_PACKAGE = """\
{
  "name": "tasks-frontend",
  "version": "1.0.0",
  "private": true,
  "type": "module",
  "scripts": {
    "build": "node build.mjs"
  },
  "devDependencies": {
    "terser": "^5.51.4"
  }
}
"""

BUILD_MJS = """\
// npm run build: minify src/app.js into dist/app.js, and put index.html beside it.
import { copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { minify } from "terser";

const source = await readFile("src/app.js", "utf8");
const { code } = await minify(source, { module: true, compress: true, mangle: true });
await rm("dist", { recursive: true, force: true });
await mkdir("dist", { recursive: true });
await writeFile("dist/app.js", `${code}\\n`);
await copyFile("index.html", "dist/index.html");
console.log(`dist/app.js: ${code.length} bytes`);
"""

INDEX_HTML = """\
<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Tasks</title>
</head>
<body>
  <h1>Tasks</h1>
  <p id="bundle"></p>
  <ul id="tasks"></ul>
  <p id="error"></p>
  <script type="module" src="app.js"></script>
</body>
</html>
"""

APP_JS = """\
// The task list, from the API.
const BUNDLE = "@BUNDLE@";

async function loadTasks() {
  const answer = await fetch("/api/tasks");
  if (!answer.ok) {
    throw new Error(`GET /api/tasks answered ${answer.status}`);
  }
  return answer.json();
}

function describe(task) {
  return `${task.title} (${task.status})`;
}

function render(tasks) {
  const items = tasks.map((task) => {
    const item = document.createElement("li");
    item.textContent = describe(task);
    return item;
  });
  document.getElementById("tasks").replaceChildren(...items);
}

document.getElementById("bundle").textContent = BUNDLE;
loadTasks().then(render).catch((error) => {
  document.getElementById("error").textContent = String(error);
});
"""


def set_version(tree: Path, version: str, previous: str) -> None:
    edit(tree / "backend" / "app" / "core" / "config.py",
         f'VERSION = "{previous}"\n', f'VERSION = "{version}"\n')
    edit(tree / "frontend" / "src" / "app.js",
         f'const BUNDLE = "{MARKERS[previous]}";\n', f'const BUNDLE = "{MARKERS[version]}";\n')


def mkdirs(tree: Path, *paths: str) -> None:
    """Make directories and their parents, each 0755 whatever the umask."""
    for path in paths:
        current = tree
        for part in Path(path).parts:
            current = current / part
            if not current.is_dir():
                current.mkdir()
                current.chmod(0o755)


def make_v1(tree: Path) -> None:
    mkdirs(tree, "backend/app/api", "backend/app/core", "backend/app/models",
           "backend/alembic/versions", "frontend/src")
    backend, app = tree / "backend", tree / "backend" / "app"
    files = {
        tree / "README.md": README,
        tree / ".gitignore": GITIGNORE,
        backend / "requirements.txt": REQUIREMENTS,
        backend / "alembic.ini": ALEMBIC_INI,
        backend / "alembic" / "env.py": ALEMBIC_ENV,
        backend / "alembic" / "script.py.mako": ALEMBIC_SCRIPT_MAKO,
        backend / "alembic" / "versions" / "001_initial_schema.py": REVISION_001,
        app / "__init__.py": "",
        app / "main.py": MAIN,
        app / "api" / "__init__.py": "",
        app / "api" / "tasks.py": TASKS_API,
        app / "core" / "__init__.py": "",
        app / "core" / "config.py": CONFIG.replace("@VERSION@", "v1"),
        app / "core" / "database.py": DATABASE,
        app / "models" / "__init__.py": MODELS_INIT,
        app / "models" / "base.py": MODEL_BASE,
        app / "models" / "user.py": MODEL_USER,
        app / "models" / "task.py": MODEL_TASK,
        app / "models" / "ai_output.py": MODEL_AI_OUTPUT,
        app / "models" / "issue.py": MODEL_ISSUE,
        app / "models" / "task_log.py": MODEL_TASK_LOG,
        tree / "frontend" / "package.json": FRONTEND_PACKAGE,
        tree / "frontend" / "package-lock.json": LOCK_FIXTURE.read_text(),
        tree / "frontend" / "build.mjs": BUILD_MJS,
        tree / "frontend" / "index.html": INDEX_HTML,
        tree / "frontend" / "src" / "app.js": APP_JS.replace("@BUNDLE@", MARKERS["v1"]),
    }
    for path, text in files.items():
        write(path, text)


def make_v2(tree: Path) -> None:
    app = tree / "backend" / "app"
    write(tree / "backend" / "alembic" / "versions" / "002_task_priority.py", REVISION_002)
    edit(app / "models" / "task.py",
         '    status: Mapped[str] = mapped_column(String(20), default="pending", '
         'server_default="pending")\n',
         '    status: Mapped[str] = mapped_column(String(20), default="pending", '
         'server_default="pending")\n'
         '    priority: Mapped[int] = mapped_column(default=0, server_default="0")\n')
    tasks = app / "api" / "tasks.py"
    edit(tasks, "    title: str = Field(min_length=1, max_length=200)\n",
         "    title: str = Field(min_length=1, max_length=200)\n"
         "    priority: int = Field(default=0, ge=0, le=9)\n")
    edit(tasks, "    status: str\n    created_at: datetime\n",
         "    status: str\n    priority: int\n    created_at: datetime\n")
    edit(tasks, "    task = Task(title=body.title)\n",
         "    task = Task(title=body.title, priority=body.priority)\n")
    edit(tasks, "select(Task).order_by(Task.id)",
         "select(Task).order_by(Task.priority.desc(), Task.id)")
    edit(tree / "frontend" / "src" / "app.js", "  return `${task.title} (${task.status})`;\n",
         "  return `${task.title} (${task.status}, priority ${task.priority})`;\n")
    set_version(tree, "v2", "v1")


def make_v3(tree: Path) -> None:
    write(tree / "backend" / "alembic" / "versions" / "003_task_projects.py", REVISION_003)
    edit(tree / "backend" / "app" / "models" / "task.py",
         '    priority: Mapped[int] = mapped_column(default=0, server_default="0")\n',
         '    priority: Mapped[int] = mapped_column(default=0, server_default="0")\n'
         '    project_id: Mapped[int | None] = mapped_column()\n')
    set_version(tree, "v3", "v2")


def describe() -> dict:
    """What fastapi-app.json says: the deploy's settings and each version's expected marks."""
    return {"deploy": DEPLOY,
            "versions": {version: {"version": version, "alembic_head": HEADS[version],
                                   "bundle_marker": MARKERS[version],
                                   "migrate_fails": version == "v3"}
                         for version in VERSIONS}}


def write_versions(outdir: Path) -> dict[str, Path]:
    """Write v1 to v3 and fastapi-app.json under outdir (replacing them); return the trees."""
    outdir.mkdir(parents=True, exist_ok=True)
    trees = {version: outdir / version for version in VERSIONS}
    for tree in trees.values():
        if tree.exists():
            shutil.rmtree(tree)
    trees["v1"].mkdir(mode=0o755)
    trees["v1"].chmod(0o755)
    make_v1(trees["v1"])
    copy_tree(trees["v1"], trees["v2"])
    make_v2(trees["v2"])
    copy_tree(trees["v2"], trees["v3"])
    make_v3(trees["v3"])
    write(outdir / "fastapi-app.json", json.dumps(describe(), indent=2) + "\n")
    return trees


def main(argv: list[str] | None = None) -> int:
    return versions_cli.run(__doc__, write_versions, "v1/ to v3/", argv)


if __name__ == "__main__":
    sys.exit(main())
