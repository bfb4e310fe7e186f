"""Administration from the command line.

    python -m tools.admin create-operator --username ana --display-name "Ana" [--capacity 4]
                                          [--supervisor] [--password ...]
    python -m tools.admin promote --username bob [--capacity 4] [--supervisor]

Uses the database of the settings (DATABASE_URL, or SQLite in DATA_DIR), and
migrates it first, so it works before the system has ever run.
"""

from __future__ import annotations

import argparse
import secrets
import sys

from api.errors import ApiError
from api.operators import create_operator, promote
from core.config import get_settings
from core.db import make_engine, migrate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.admin")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-operator", help="a new operator account")
    create.add_argument("--username", required=True)
    create.add_argument("--display-name", required=True)
    create.add_argument("--password", help="default: a generated one, printed")
    for command in (create, commands.add_parser("promote", help="make a user an operator")):
        command.add_argument("--capacity", type=int, default=None, help="concurrent chats")
        command.add_argument("--supervisor", action="store_true")
    commands.choices["promote"].add_argument("--username", required=True)
    args = parser.parse_args(argv)

    settings = get_settings()
    url = settings.effective_database_url
    migrate(url)
    engine = make_engine(url)
    capacity = args.capacity or settings.support_default_capacity
    try:
        if args.command == "create-operator":
            password = args.password or secrets.token_urlsafe(12)
            user_id = create_operator(
                engine,
                username=args.username,
                password=password,
                display_name=args.display_name,
                capacity=capacity,
                supervisor=args.supervisor,
            )
            print(f"operator {args.username} ({user_id}) created; password: {password}")
        else:
            user_id = promote(engine, args.username, capacity, supervisor=args.supervisor)
            print(f"{args.username} ({user_id}) is now an operator")
    except ApiError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
