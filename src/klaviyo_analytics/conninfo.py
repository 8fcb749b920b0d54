"""Parse and check a PostgreSQL connection string without ever repeating its password.

libpq's own parse errors quote the whole input (`missing "=" after "mysql://admin:pw@..."`),
so they never reach a message: `parse_conninfo` names the problem in its own words, built from
the parsed parts only.
"""

from __future__ import annotations

import re

import psycopg
from psycopg.conninfo import conninfo_to_dict

from klaviyo_analytics.errors import ConfigurationError

URI_SCHEMES = ("postgresql", "postgres")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_KEYWORD = re.compile(r"^\s*[A-Za-z_]+\s*=")


def parse_conninfo(conninfo: str) -> dict[str, str]:
    """Return the parameters of a libpq URI (`postgresql://...`) or `key=value` string.

    Raises ConfigurationError saying what is wrong (another scheme, not a connection string,
    a port that is not a number in 1..65535), never quoting the input.
    """
    scheme = _SCHEME.match(conninfo)
    if scheme is not None and scheme.group(1).lower() not in URI_SCHEMES:
        raise ConfigurationError(
            f"scheme {scheme.group(1)!r} is not PostgreSQL: expected a postgresql:// URL"
        )
    if scheme is None and conninfo.strip() and not _KEYWORD.match(conninfo):
        raise ConfigurationError(
            "not a PostgreSQL connection string: expected postgresql://user:password@host:port/"
            "dbname or key=value pairs"
        )
    try:
        params = {k: str(v) for k, v in conninfo_to_dict(conninfo).items() if v is not None}
    except psycopg.ProgrammingError:
        raise ConfigurationError(
            "not a valid PostgreSQL connection string (check its quoting and %-escapes)"
        ) from None
    for port in params.get("port", "").split(","):
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ConfigurationError(
                f"port {port[:20]!r} of host {params.get('host', 'localhost')} is not a number "
                "from 1 to 65535"
            )
    return params
