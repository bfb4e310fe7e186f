"""`python -m tools.pgcheck URL`: exit 0 when a PostgreSQL server answers at URL."""

import sys

import psycopg


def main() -> int:
    try:
        with psycopg.connect(sys.argv[1], connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
