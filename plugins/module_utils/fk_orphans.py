# Copyright: slipway contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Find and clean foreign-key orphans on PostgreSQL and MySQL/MariaDB.

The work is split in three steps so that check mode is honest:
resolve_relations() validates the input against the catalog, plan_relation() counts (and,
for a cleaning action, lists) the orphans without changing anything, and apply_plan() cleans
them in short per-batch transactions that re-check each row's parent in the same statement
(PostgreSQL) or under the rows' locks in the same transaction (MySQL).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

from ansible_collections.slipway.django.plugins.module_utils.database import (
    HAS_PSYCOPG2,
    HAS_PYMYSQL,
)

if HAS_PSYCOPG2:
    import psycopg2.errors
    from psycopg2 import sql as pgsql
if HAS_PYMYSQL:
    import pymysql
    import pymysql.cursors

ACTIONS = ("report", "delete", "nullify", "archive")
CLEANING_ACTIONS = ("delete", "nullify", "archive")
ON_DELETE = {
    "no_action": "NO ACTION",
    "restrict": "RESTRICT",
    "cascade": "CASCADE",
    "set_null": "SET NULL",
}
SAMPLE_SIZE = 5
ORPHAN_KEYS_PAGE = 500000
ARCHIVED_AT = "archived_at"
MYSQL_LOCK_WAIT_TIMEOUT = 1205
TYPE_FAMILIES = (
    frozenset({"smallint", "integer", "bigint", "int2", "int4", "int8",
               "tinyint", "mediumint", "int"}),
    frozenset({"character varying", "character", "text", "varchar", "bpchar", "char"}),
)


class OrphanError(Exception):
    """Bad input or an unsafe situation; the message tells the user what to do."""


@dataclass
class Column:
    name: str
    data_type: str
    nullable: bool
    type_sql: str


@dataclass
class ForeignKey:
    name: str
    table: str
    columns: list
    references_table: str
    references_columns: list
    validated: bool = True


@dataclass
class Relation:
    table: str
    column: str
    references_table: str
    references_column: str = "id"
    archive_table: str | None = None
    constraint_name: str | None = None
    on_delete: str = "no_action"
    primary_key: str = ""
    primary_key_type: str = ""
    nullable: bool = False
    columns: list = field(default_factory=list)
    existing_constraint: ForeignKey | None = None

    @property
    def label(self) -> str:
        return (f"{self.table}.{self.column} -> "
                f"{self.references_table}.{self.references_column}")


@dataclass
class RelationPlan:
    relation: Relation
    action: str
    table_rows: int
    orphans: int
    sample: list
    keys: list
    create_archive_table: bool = False
    add_constraint: bool = False
    validate_constraint: bool = False
    seconds: float = 0.0
    deleted: int = 0
    nullified: int = 0
    archived: int = 0
    constraint_added: bool = False
    constraint_validated: bool = False
    archive_table_created: bool = False

    @property
    def made_changes(self) -> bool:
        return bool(self.deleted or self.nullified or self.archived or self.constraint_added
                    or self.constraint_validated or self.archive_table_created)

    @property
    def changes_rows(self) -> bool:
        return self.action in CLEANING_ACTIONS and self.orphans > 0

    @property
    def changes_anything(self) -> bool:
        return (self.changes_rows or self.create_archive_table or self.add_constraint
                or self.validate_constraint)


# Pure helpers ---------------------------------------------------------------------------------

def bounded_name(name: str, limit: int) -> str:
    """name, or a shortened name with a stable hash suffix when it exceeds the engine's limit."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]  # noqa: S324 - naming only
    return f"{name[:limit - 9]}_{digest}"


def default_archive_table(table: str, limit: int) -> str:
    return bounded_name(f"{table}_orphans", limit)


def default_constraint_name(relation: Relation, limit: int) -> str:
    return bounded_name(f"{relation.table}_{relation.column}_fk_{relation.references_table}_"
                        f"{relation.references_column}", limit)


def types_compatible(child_type: str, parent_type: str) -> bool:
    """Whether values of the two column types can be compared as a foreign key."""
    if child_type == parent_type:
        return True
    return any(child_type in family and parent_type in family for family in TYPE_FAMILIES)


def chunks(keys: list, size: int):
    for start in range(0, len(keys), size):
        yield keys[start:start + size]


def fraction_violations(plans: list, max_fraction: float) -> list:
    """Messages for each table whose changed rows would exceed max_fraction of its rows."""
    changed = {}
    rows = {}
    for plan in plans:
        if plan.changes_rows:
            table = plan.relation.table
            changed[table] = changed.get(table, 0) + plan.orphans
            rows[table] = plan.table_rows
    messages = []
    for table, count in changed.items():
        fraction = count / rows[table] if rows[table] else 1.0
        if fraction > max_fraction:
            messages.append(f"{table}: {count} of {rows[table]} rows ({fraction:.1%}) would change,"
                            f" above max_fraction={max_fraction}")
    return messages


def mysql_quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def mysql_placeholders(count: int) -> str:
    return ", ".join(["%s"] * count)


# PostgreSQL -----------------------------------------------------------------------------------

class PostgresDialect:
    engine = "postgresql"
    name_limit = 63

    def __init__(self, connection):
        self.conn = connection

    def _rows(self, query, params=()) -> list:
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            rows = cur.fetchall()
        self.conn.commit()
        return rows

    def _orphan_condition(self, rel: Relation):
        return pgsql.SQL("c.{col} IS NOT NULL AND NOT EXISTS "
                         "(SELECT 1 FROM {parent} p WHERE p.{ref} = c.{col})").format(
            col=pgsql.Identifier(rel.column), parent=pgsql.Identifier(rel.references_table),
            ref=pgsql.Identifier(rel.references_column))

    def _key_match(self, rel: Relation):
        # The key type comes from the catalog (format_type), never from user input.
        return pgsql.SQL("c.{pk} = ANY(%s::{pk_type}[])").format(
            pk=pgsql.Identifier(rel.primary_key), pk_type=pgsql.SQL(rel.primary_key_type))

    def location(self) -> str:
        return "schema " + self._rows("SELECT current_schema()")[0][0]

    def table_exists(self, table: str) -> bool:
        return bool(self._rows(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relname = %s AND c.relkind IN ('r', 'p')",
            (table,)))

    def columns(self, table: str) -> dict:
        rows = self._rows(
            "SELECT a.attname, t.typname, NOT a.attnotnull, format_type(a.atttypid, a.atttypmod)"
            " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = a.atttypid"
            " WHERE n.nspname = current_schema() AND c.relname = %s AND a.attnum > 0"
            " AND NOT a.attisdropped ORDER BY a.attnum", (table,))
        return {name: Column(name, data_type, nullable, type_sql)
                for name, data_type, nullable, type_sql in rows}

    def primary_key(self, table: str) -> list:
        return [row[0] for row in self._rows(
            "SELECT a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey)"
            " WHERE n.nspname = current_schema() AND c.relname = %s AND i.indisprimary"
            " ORDER BY array_position(i.indkey::int2[], a.attnum)", (table,))]

    def is_unique(self, table: str, column: str) -> bool:
        return bool(self._rows(
            "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]"
            " WHERE n.nspname = current_schema() AND c.relname = %s AND a.attname = %s"
            " AND i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL", (table, column)))

    def constraint_name_taken(self, table: str, name: str) -> bool:
        return bool(self._rows(
            "SELECT 1 FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relname = %s AND k.conname = %s",
            (table, name)))

    def declared_foreign_keys(self) -> list:
        rows = self._rows(
            "SELECT k.conname, c.relname, fn.nspname = n.nspname, f.relname, k.convalidated,"
            " ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY u(num, pos)"
            "       JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.num"
            "       ORDER BY u.pos),"
            " ARRAY(SELECT a.attname FROM unnest(k.confkey) WITH ORDINALITY u(num, pos)"
            "       JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.num"
            "       ORDER BY u.pos)"
            " FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_class f ON f.oid = k.confrelid"
            " JOIN pg_namespace fn ON fn.oid = f.relnamespace"
            " WHERE k.contype = 'f' AND n.nspname = current_schema()"
            " ORDER BY c.relname, k.conname")
        return [ForeignKey(name, table, list(columns), ref_table if same_schema else None,
                           list(ref_columns), validated)
                for name, table, same_schema, ref_table, validated, columns, ref_columns in rows]

    def count_rows(self, table: str) -> int:
        return self._rows(pgsql.SQL("SELECT count(*) FROM {t}").format(
            t=pgsql.Identifier(table)))[0][0]

    def count_orphans(self, rel: Relation) -> int:
        return self._rows(pgsql.SQL("SELECT count(*) FROM {t} c WHERE {cond}").format(
            t=pgsql.Identifier(rel.table), cond=self._orphan_condition(rel)))[0][0]

    def sample_orphans(self, rel: Relation, limit: int) -> list:
        query = pgsql.SQL("SELECT c.{pk} FROM {t} c WHERE {cond} ORDER BY c.{pk} LIMIT %s").format(
            pk=pgsql.Identifier(rel.primary_key), t=pgsql.Identifier(rel.table),
            cond=self._orphan_condition(rel))
        return [row[0] for row in self._rows(query, (limit,))]

    def orphan_keys(self, rel: Relation) -> list:
        """Every orphan's primary key in key order, fetched in pages of ORPHAN_KEYS_PAGE."""
        pk = pgsql.Identifier(rel.primary_key)
        # Not a named cursor: those cannot use parallel workers, which halve this scan.
        first = pgsql.SQL("SELECT c.{pk} FROM {t} c WHERE {cond} ORDER BY c.{pk} LIMIT %s")
        after = pgsql.SQL("SELECT c.{pk} FROM {t} c WHERE c.{pk} > %s AND {cond}"
                          " ORDER BY c.{pk} LIMIT %s")
        parts = dict(pk=pk, t=pgsql.Identifier(rel.table), cond=self._orphan_condition(rel))
        keys = [row[0] for row in self._rows(first.format(**parts), (ORPHAN_KEYS_PAGE,))]
        page = keys
        while len(page) == ORPHAN_KEYS_PAGE:
            page = [row[0] for row in self._rows(after.format(**parts),
                                                 (keys[-1], ORPHAN_KEYS_PAGE))]
            keys.extend(page)
        return keys

    def _batch(self, query, keys: list) -> int:
        try:
            with self.conn.cursor() as cur:
                # A batch probes the parent index per row; otherwise each batch hashes the
                # whole parent table.
                cur.execute("SET LOCAL enable_hashjoin = off")
                cur.execute("SET LOCAL enable_mergejoin = off")
                cur.execute(query, (keys,))
                count = cur.rowcount
            self.conn.commit()
        except Exception:
            self.conn.rollback()
            raise
        return count

    def delete_batch(self, rel: Relation, keys: list) -> int:
        return self._batch(pgsql.SQL("DELETE FROM {t} c WHERE {keys} AND {cond}").format(
            t=pgsql.Identifier(rel.table), keys=self._key_match(rel),
            cond=self._orphan_condition(rel)), keys)

    def nullify_batch(self, rel: Relation, keys: list) -> int:
        query = pgsql.SQL("UPDATE {t} c SET {col} = NULL WHERE {keys} AND {cond}").format(
            t=pgsql.Identifier(rel.table), col=pgsql.Identifier(rel.column),
            keys=self._key_match(rel), cond=self._orphan_condition(rel))
        return self._batch(query, keys)

    def archive_batch(self, rel: Relation, keys: list) -> int:
        columns = pgsql.SQL(", ").join(pgsql.Identifier(name) for name in rel.columns)
        query = pgsql.SQL(
            "WITH moved AS (DELETE FROM {t} c WHERE {keys} AND {cond} RETURNING c.*)"
            " INSERT INTO {archive} ({columns}, {archived_at})"
            " SELECT {columns}, now() FROM moved").format(
            t=pgsql.Identifier(rel.table), keys=self._key_match(rel),
            cond=self._orphan_condition(rel), archive=pgsql.Identifier(rel.archive_table),
            columns=columns, archived_at=pgsql.Identifier(ARCHIVED_AT))
        return self._batch(query, keys)

    def create_archive_table(self, rel: Relation) -> None:
        with self.conn.cursor() as cur:
            cur.execute(pgsql.SQL("CREATE TABLE {archive} (LIKE {t})").format(
                archive=pgsql.Identifier(rel.archive_table), t=pgsql.Identifier(rel.table)))
            cur.execute(pgsql.SQL("ALTER TABLE {archive} ADD COLUMN {archived_at}"
                                  " timestamptz NOT NULL DEFAULT now()").format(
                archive=pgsql.Identifier(rel.archive_table),
                archived_at=pgsql.Identifier(ARCHIVED_AT)))
        self.conn.commit()

    def _under_lock_timeout(self, query, lock_timeout: float, retries: int) -> None:
        """Run a DDL statement with lock_timeout set, retrying with backoff on lock timeouts."""
        delay = 0.5
        for attempt in range(retries + 1):
            try:
                with self.conn.cursor() as cur:
                    cur.execute("SELECT set_config('lock_timeout', %s, true)",
                                (f"{int(lock_timeout * 1000)}ms",))
                    cur.execute(query)
                self.conn.commit()
                return
            except psycopg2.errors.LockNotAvailable:
                self.conn.rollback()
                if attempt == retries:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def add_constraint(self, rel: Relation, lock_timeout: float, retries: int) -> None:
        # Even NOT VALID takes SHARE ROW EXCLUSIVE on both tables, hence the lock_timeout.
        self._under_lock_timeout(pgsql.SQL(
            "ALTER TABLE {t} ADD CONSTRAINT {name} FOREIGN KEY ({col}) REFERENCES {parent} ({ref})"
            " ON DELETE {on_delete} DEFERRABLE INITIALLY DEFERRED NOT VALID").format(
            t=pgsql.Identifier(rel.table), name=pgsql.Identifier(rel.constraint_name),
            col=pgsql.Identifier(rel.column), parent=pgsql.Identifier(rel.references_table),
            ref=pgsql.Identifier(rel.references_column),
            on_delete=pgsql.SQL(ON_DELETE[rel.on_delete])), lock_timeout, retries)
        self.validate_constraint(rel, lock_timeout, retries)

    def validate_constraint(self, rel: Relation, lock_timeout: float, retries: int) -> None:
        self._under_lock_timeout(pgsql.SQL("ALTER TABLE {t} VALIDATE CONSTRAINT {name}").format(
            t=pgsql.Identifier(rel.table), name=pgsql.Identifier(rel.constraint_name)),
            lock_timeout, retries)


# MySQL and MariaDB ----------------------------------------------------------------------------

class MysqlDialect:
    engine = "mysql"
    name_limit = 64

    def __init__(self, connection):
        self.conn = connection
        with self.conn.cursor() as cur:
            # No gap locks: batches must not block inserts next to the rows they touch.
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        self.conn.commit()

    def _rows(self, query: str, params=()) -> list:
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            rows = cur.fetchall()
        self.conn.commit()
        return list(rows)

    @staticmethod
    def _orphans_from(rel: Relation) -> str:
        """FROM and WHERE of an anti-join that probes the parent's index row by row.

        Not NOT EXISTS: MariaDB may turn that into NOT IN over a materialized copy of the
        whole parent table (an on-disk temporary table when the parent is large).
        """
        col, ref = mysql_quote(rel.column), mysql_quote(rel.references_column)
        return (f"FROM {mysql_quote(rel.table)} c LEFT JOIN {mysql_quote(rel.references_table)}"
                f" p ON p.{ref} = c.{col} WHERE c.{col} IS NOT NULL AND p.{ref} IS NULL")

    def location(self) -> str:
        return "database " + str(self._rows("SELECT DATABASE()")[0][0])

    def table_exists(self, table: str) -> bool:
        return bool(self._rows(
            "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
            " AND TABLE_NAME = %s AND TABLE_TYPE = 'BASE TABLE'", (table,)))

    def columns(self, table: str) -> dict:
        rows = self._rows(
            "SELECT COLUMN_NAME, DATA_TYPE, IS_NULLABLE = 'YES', COLUMN_TYPE"
            " FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()"
            " AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION", (table,))
        return {name: Column(name, data_type, bool(nullable), type_sql)
                for name, data_type, nullable, type_sql in rows}

    def primary_key(self, table: str) -> list:
        return [row[0] for row in self._rows(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE"
            " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND CONSTRAINT_NAME = 'PRIMARY'"
            " ORDER BY ORDINAL_POSITION", (table,))]

    def is_unique(self, table: str, column: str) -> bool:
        return bool(self._rows(
            "SELECT INDEX_NAME FROM information_schema.STATISTICS"
            " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND NON_UNIQUE = 0"
            " GROUP BY INDEX_NAME HAVING COUNT(*) = 1 AND MAX(COLUMN_NAME) = %s",
            (table, column)))

    def constraint_name_taken(self, table: str, name: str) -> bool:
        # InnoDB foreign key names are unique per database, other names per table.
        return bool(self._rows(
            "SELECT 1 FROM information_schema.TABLE_CONSTRAINTS"
            " WHERE CONSTRAINT_SCHEMA = DATABASE() AND CONSTRAINT_NAME = %s"
            " AND (CONSTRAINT_TYPE = 'FOREIGN KEY' OR TABLE_NAME = %s)", (name, table)))

    def declared_foreign_keys(self) -> list:
        rows = self._rows(
            "SELECT k.CONSTRAINT_NAME, k.TABLE_NAME, k.COLUMN_NAME,"
            " k.REFERENCED_TABLE_SCHEMA = k.TABLE_SCHEMA, k.REFERENCED_TABLE_NAME,"
            " k.REFERENCED_COLUMN_NAME"
            " FROM information_schema.KEY_COLUMN_USAGE k"
            " JOIN information_schema.REFERENTIAL_CONSTRAINTS r"
            " ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.TABLE_NAME = k.TABLE_NAME"
            " AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME"
            " WHERE k.TABLE_SCHEMA = DATABASE() AND k.REFERENCED_TABLE_NAME IS NOT NULL"
            " ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION")
        keys = {}
        for name, table, column, same_schema, ref_table, ref_column in rows:
            key = keys.setdefault((table, name), ForeignKey(
                name, table, [], ref_table if same_schema else None, []))
            key.columns.append(column)
            key.references_columns.append(ref_column)
        return list(keys.values())

    def count_rows(self, table: str) -> int:
        return self._rows(f"SELECT COUNT(*) FROM {mysql_quote(table)}")[0][0]

    def count_orphans(self, rel: Relation) -> int:
        return self._rows(f"SELECT COUNT(*) {self._orphans_from(rel)}")[0][0]

    def sample_orphans(self, rel: Relation, limit: int) -> list:
        pk = mysql_quote(rel.primary_key)
        return [row[0] for row in self._rows(
            f"SELECT c.{pk} {self._orphans_from(rel)} ORDER BY c.{pk} LIMIT %s", (limit,))]

    def orphan_keys(self, rel: Relation) -> list:
        """Every orphan's primary key in key order, streamed (a non-locking consistent read)."""
        pk = mysql_quote(rel.primary_key)
        with self.conn.cursor(pymysql.cursors.SSCursor) as cur:
            cur.execute(f"SELECT c.{pk} {self._orphans_from(rel)} ORDER BY c.{pk}")
            keys = [row[0] for row in cur]
        self.conn.commit()
        return keys

    def _lock_orphans(self, cur, rel: Relation, keys: list) -> list:
        """Lock the rows of keys that are still orphans; the re-check happens under the lock."""
        pk = mysql_quote(rel.primary_key)
        cur.execute(f"SELECT c.{pk} {self._orphans_from(rel)}"
                    f" AND c.{pk} IN ({mysql_placeholders(len(keys))}) FOR UPDATE", keys)
        return [row[0] for row in cur.fetchall()]

    def _batch(self, rel: Relation, keys: list, statements) -> int:
        """Lock the batch's orphans, then run statements(locked keys) in the same transaction."""
        try:
            with self.conn.cursor() as cur:
                locked = self._lock_orphans(cur, rel, keys)
                count = 0
                if locked:
                    key_list = mysql_placeholders(len(locked))
                    for statement in statements(key_list):
                        cur.execute(statement, locked)
                        count = cur.rowcount
            self.conn.commit()
        except Exception:
            self.conn.rollback()
            raise
        return count

    def delete_batch(self, rel: Relation, keys: list) -> int:
        table, pk = mysql_quote(rel.table), mysql_quote(rel.primary_key)
        return self._batch(rel, keys, lambda key_list: [
            f"DELETE FROM {table} WHERE {pk} IN ({key_list})"])

    def nullify_batch(self, rel: Relation, keys: list) -> int:
        table, pk = mysql_quote(rel.table), mysql_quote(rel.primary_key)
        return self._batch(rel, keys, lambda key_list: [
            f"UPDATE {table} SET {mysql_quote(rel.column)} = NULL WHERE {pk} IN ({key_list})"])

    def archive_batch(self, rel: Relation, keys: list) -> int:
        table, pk = mysql_quote(rel.table), mysql_quote(rel.primary_key)
        columns = ", ".join(mysql_quote(name) for name in rel.columns)
        archive = mysql_quote(rel.archive_table)
        return self._batch(rel, keys, lambda key_list: [
            f"INSERT INTO {archive} ({columns}, {mysql_quote(ARCHIVED_AT)})"
            f" SELECT {columns}, NOW(6) FROM {table} WHERE {pk} IN ({key_list})",
            f"DELETE FROM {table} WHERE {pk} IN ({key_list})"])

    def create_archive_table(self, rel: Relation) -> None:
        archive = mysql_quote(rel.archive_table)
        with self.conn.cursor() as cur:
            cur.execute(f"CREATE TABLE {archive} ENGINE=InnoDB AS SELECT * FROM"
                        f" {mysql_quote(rel.table)} WHERE 1 = 0")
            cur.execute(f"ALTER TABLE {archive} ADD COLUMN {mysql_quote(ARCHIVED_AT)}"
                        f" DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)")
        self.conn.commit()

    def add_constraint(self, rel: Relation, lock_timeout: float, retries: int) -> None:
        """Add the key online: the rows were verified clean, so InnoDB need not copy the table."""
        statement = (
            f"ALTER TABLE {mysql_quote(rel.table)} ADD CONSTRAINT"
            f" {mysql_quote(rel.constraint_name)} FOREIGN KEY ({mysql_quote(rel.column)})"
            f" REFERENCES {mysql_quote(rel.references_table)}"
            f" ({mysql_quote(rel.references_column)}) ON DELETE {ON_DELETE[rel.on_delete]},"
            f" ALGORITHM=INPLACE, LOCK=NONE")
        delay = 0.5
        with self.conn.cursor() as cur:
            cur.execute("SET SESSION lock_wait_timeout = %s", (max(1, round(lock_timeout)),))
            cur.execute("SET SESSION foreign_key_checks = 0")
            try:
                for attempt in range(retries + 1):
                    try:
                        cur.execute(statement)
                        break
                    except pymysql.err.OperationalError as error:
                        if error.args[0] != MYSQL_LOCK_WAIT_TIMEOUT or attempt == retries:
                            raise
                        time.sleep(delay)
                        delay = min(delay * 2, 10.0)
            finally:
                cur.execute("SET SESSION foreign_key_checks = 1")
        self.conn.commit()

    def validate_constraint(self, rel: Relation, lock_timeout: float, retries: int) -> None:
        raise OrphanError("MySQL has no NOT VALID foreign keys to validate")


def make_dialect(engine: str, connection):
    return PostgresDialect(connection) if engine == "postgresql" else MysqlDialect(connection)


# Resolving the input against the catalog ---------------------------------------------------------

def _require_table(dialect, table: str, what: str) -> dict:
    if not dialect.table_exists(table):
        raise OrphanError(f"{what}: no table {table!r} in {dialect.location()}. Check the table"
                          f" name (names are case-sensitive). Nothing was changed.")
    return dialect.columns(table)


def _require_column(columns: dict, table: str, column: str, what: str) -> Column:
    if column not in columns:
        raise OrphanError(f"{what}: table {table!r} has no column {column!r}; its columns are"
                          f" {', '.join(columns)}. Nothing was changed.")
    return columns[column]


def resolve_relation(dialect, rel: Relation, action: str, add_constraint: bool,
                     declared: list) -> Relation:
    """Check one relation against the catalog and fill in what the cleanup needs."""
    what = f"relation {rel.label}"
    columns = _require_table(dialect, rel.table, what)
    child = _require_column(columns, rel.table, rel.column, what)
    parent_columns = _require_table(dialect, rel.references_table, what)
    parent = _require_column(parent_columns, rel.references_table, rel.references_column, what)
    if not types_compatible(child.data_type, parent.data_type):
        raise OrphanError(f"{what}: column types differ ({rel.table}.{rel.column} is"
                          f" {child.type_sql}, {rel.references_table}.{rel.references_column} is"
                          f" {parent.type_sql}); fix the relation or the column type first."
                          f" Nothing was changed.")
    primary_key = dialect.primary_key(rel.table)
    if len(primary_key) != 1:
        found = "no primary key" if not primary_key else f"a composite primary key {primary_key}"
        raise OrphanError(f"{what}: table {rel.table!r} has {found}; the cleanup walks the table"
                          f" by a single-column primary key. Add one, or clean this table by hand."
                          f" Nothing was changed.")
    rel.primary_key = primary_key[0]
    rel.primary_key_type = columns[rel.primary_key].type_sql
    rel.nullable = child.nullable
    rel.columns = list(columns)
    if action == "nullify" and not rel.nullable:
        raise OrphanError(f"{what}: action=nullify needs a nullable column, but"
                          f" {rel.table}.{rel.column} is NOT NULL. Use action=delete or"
                          f" action=archive. Nothing was changed.")
    if action == "archive":
        _resolve_archive_table(dialect, rel, columns, what)
    rel.existing_constraint = next(
        (key for key in declared if key.table == rel.table and key.columns == [rel.column]
         and key.references_table == rel.references_table
         and key.references_columns == [rel.references_column]), None)
    if add_constraint:
        _resolve_constraint(dialect, rel, what, child, parent)
    return rel


def _resolve_archive_table(dialect, rel: Relation, columns: dict, what: str) -> None:
    rel.archive_table = rel.archive_table or default_archive_table(rel.table, dialect.name_limit)
    if rel.archive_table == rel.table:
        raise OrphanError(f"{what}: archive_table must differ from the table itself."
                          f" Nothing was changed.")
    if ARCHIVED_AT in columns:
        raise OrphanError(f"{what}: table {rel.table!r} already has a column {ARCHIVED_AT!r},"
                          f" which the archive table adds; archive this table by hand."
                          f" Nothing was changed.")
    if dialect.table_exists(rel.archive_table):
        archive_columns = dialect.columns(rel.archive_table)
        missing = [name for name in [*columns, ARCHIVED_AT] if name not in archive_columns]
        if missing:
            raise OrphanError(f"{what}: archive table {rel.archive_table!r} exists but lacks"
                              f" columns {missing}. Drop or rename it, or set archive_table to"
                              f" another name. Nothing was changed.")


def _resolve_constraint(dialect, rel: Relation, what: str, child: Column,
                        parent: Column) -> None:
    if rel.existing_constraint:
        rel.constraint_name = rel.existing_constraint.name
        return
    if dialect.engine == "mysql" and child.type_sql != parent.type_sql:
        raise OrphanError(f"{what}: MySQL needs identical column types for a foreign key, but"
                          f" {rel.table}.{rel.column} is {child.type_sql} and"
                          f" {rel.references_table}.{rel.references_column} is"
                          f" {parent.type_sql}. Alter the column first. Nothing was changed.")
    if rel.on_delete == "set_null" and not rel.nullable:
        raise OrphanError(f"{what}: on_delete=set_null needs a nullable column, but"
                          f" {rel.table}.{rel.column} is NOT NULL. Nothing was changed.")
    if not dialect.is_unique(rel.references_table, rel.references_column):
        raise OrphanError(f"{what}: {rel.references_table}.{rel.references_column} is neither a"
                          f" primary key nor unique, so no foreign key can reference it."
                          f" Nothing was changed.")
    rel.constraint_name = rel.constraint_name or default_constraint_name(rel, dialect.name_limit)
    if dialect.constraint_name_taken(rel.table, rel.constraint_name):
        raise OrphanError(f"{what}: a constraint named {rel.constraint_name!r} already exists."
                          f" Set constraint_name to another name. Nothing was changed.")


def discover_relations(declared: list) -> tuple:
    """Single-column declared foreign keys as relations, and messages for those skipped."""
    relations, skipped = [], []
    for key in declared:
        if key.references_table is None:
            skipped.append(f"{key.table}.{key.name}: references a table in another schema or"
                           f" database; skipped.")
        elif len(key.columns) != 1:
            skipped.append(f"{key.table}.{key.name}: composite foreign key"
                           f" ({', '.join(key.columns)}) is not supported; skipped.")
        else:
            relations.append(Relation(key.table, key.columns[0], key.references_table,
                                      key.references_columns[0]))
    return relations, skipped


# Plan, apply, verify ----------------------------------------------------------------------------

def plan_relation(dialect, rel: Relation, action: str, add_constraint: bool) -> RelationPlan:
    """What the module would do for one relation; reads only."""
    started = time.monotonic()
    table_rows = dialect.count_rows(rel.table)
    if action in CLEANING_ACTIONS:
        keys = dialect.orphan_keys(rel)
        orphans, sample = len(keys), keys[:SAMPLE_SIZE]
    else:
        keys = []
        orphans = dialect.count_orphans(rel)
        sample = dialect.sample_orphans(rel, SAMPLE_SIZE) if orphans else []
    plan = RelationPlan(rel, action, table_rows, orphans, sample, keys)
    plan.create_archive_table = (action == "archive" and orphans > 0
                                 and not dialect.table_exists(rel.archive_table))
    if add_constraint:
        existing = rel.existing_constraint
        plan.add_constraint = existing is None
        plan.validate_constraint = existing is not None and not existing.validated
    plan.seconds = time.monotonic() - started
    return plan


def clean(dialect, plan: RelationPlan, batch_size: int) -> None:
    """Clean the planned orphans batch by batch, each batch its own transaction."""
    started = time.monotonic()
    rel = plan.relation
    # Two relations on one table share its archive table: the first one creates it.
    if plan.create_archive_table and not dialect.table_exists(rel.archive_table):
        dialect.create_archive_table(rel)
        plan.archive_table_created = True
    if plan.changes_rows:
        for keys in chunks(plan.keys, batch_size):
            if plan.action == "delete":
                plan.deleted += dialect.delete_batch(rel, keys)
            elif plan.action == "nullify":
                plan.nullified += dialect.nullify_batch(rel, keys)
            else:
                plan.archived += dialect.archive_batch(rel, keys)
    plan.seconds += time.monotonic() - started


def verify(dialect, plan: RelationPlan) -> None:
    """Fail unless no orphan is left (the seed script's --verify)."""
    started = time.monotonic()
    left = dialect.count_orphans(plan.relation)
    plan.seconds += time.monotonic() - started
    if left:
        raise OrphanError(f"relation {plan.relation.label}: {left} orphans are left after the"
                          f" cleanup; something wrote them while it ran (an application deleting"
                          f" parents or inserting bad references). Find that writer and run the"
                          f" module again.")


def constrain(dialect, plan: RelationPlan, lock_timeout: float, retries: int) -> None:
    """Add (or validate) the foreign key once the rows are clean."""
    started = time.monotonic()
    if plan.add_constraint:
        dialect.add_constraint(plan.relation, lock_timeout, retries)
        plan.constraint_added = True
        if dialect.engine == "mysql":
            # The key was added without checking rows: make sure none slipped in meanwhile.
            verify(dialect, plan)
    elif plan.validate_constraint:
        dialect.validate_constraint(plan.relation, lock_timeout, retries)
        plan.constraint_validated = True
    plan.seconds += time.monotonic() - started


def apply_plan(dialect, plan: RelationPlan, batch_size: int, lock_timeout: float,
               retries: int) -> None:
    clean(dialect, plan, batch_size)
    if plan.changes_rows:
        verify(dialect, plan)
    constrain(dialect, plan, lock_timeout, retries)


def plan_result(plan: RelationPlan, check_mode: bool) -> dict:
    """One relation's entry in the module's result; in check mode, what would be done."""
    rel = plan.relation
    done = dict(delete=plan.deleted, nullify=plan.nullified, archive=plan.archived)
    if check_mode:
        done = {action: plan.orphans if plan.changes_rows else 0 for action in done}
    return dict(
        table=rel.table, column=rel.column, references_table=rel.references_table,
        references_column=rel.references_column, action=plan.action,
        table_rows=plan.table_rows, orphans=plan.orphans, sample=plan.sample,
        deleted=done["delete"] if plan.action == "delete" else 0,
        nullified=done["nullify"] if plan.action == "nullify" else 0,
        archived=done["archive"] if plan.action == "archive" else 0,
        archive_table=rel.archive_table,
        constraint_name=rel.constraint_name or (
            rel.existing_constraint.name if rel.existing_constraint else None),
        constraint_added=plan.add_constraint if check_mode else plan.constraint_added,
        constraint_validated=(plan.validate_constraint if check_mode
                              else plan.constraint_validated),
        seconds=round(plan.seconds, 3),
    )
