# Copyright: slipway contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options shared by the slipway.django database modules.

The matching argument spec is connection_argument_spec() in plugins/module_utils/database.py.
"""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  engine:
    description:
      - The database engine. V(mysql) covers MySQL and MariaDB.
    type: str
    required: true
    choices: [postgresql, mysql]
  login_host:
    description:
      - Host name or address of the database server.
      - When omitted, PostgreSQL uses libpq's default (usually its local socket) and MySQL
        connects to V(localhost).
      - Ignored when O(login_unix_socket) is set.
    type: str
  login_port:
    description:
      - TCP port of the database server.
      - When omitted, V(5432) for PostgreSQL and V(3306) for MySQL.
    type: int
  login_user:
    description:
      - The user to log in as. When omitted, the driver's default is used.
    type: str
  login_password:
    description:
      - The password of O(login_user).
    type: str
  login_unix_socket:
    description:
      - Connect over a local socket instead of TCP.
      - For PostgreSQL, the directory that holds the socket (as libpq's C(host)); for MySQL,
        the path of the socket file.
    type: str
  login_db:
    description:
      - The database to connect to.
    type: str
  connect_timeout:
    description:
      - Seconds to wait for the server to accept the connection.
    type: int
    default: 30
requirements:
  - psycopg2 on the managed host when O(engine=postgresql)
  - PyMySQL on the managed host when O(engine=mysql)
"""
