"""The throw-away servers the other integration tests rely on really accept logins."""

import psycopg2
import pymysql


def test_postgresql_server_accepts_password_login_over_tcp(pg_server, pg_database):
    with psycopg2.connect(host=pg_server.host, port=pg_server.port, user=pg_server.user,
                          password=pg_server.password, dbname=pg_database) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting('server_version_num')::int")
            assert cur.fetchone()[0] >= 150000


def test_mariadb_server_accepts_password_login_over_tcp(mysql_server, mysql_database):
    conn = pymysql.connect(host=mysql_server.host, port=mysql_server.port,
                           user=mysql_server.user, password=mysql_server.password,
                           database=mysql_database)
    with conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        assert "MariaDB" in cur.fetchone()[0]
    conn.close()
