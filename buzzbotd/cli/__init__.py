"""The command line: `buzzbotd [--config PATH] COMMAND`.

Parses the line, loads the configuration, checks access (access.py), runs
the command (commands.py) and maps what went wrong to an exit code
(exits.py). Bad input never gets a traceback: it gets the file, key, value
and what is expected.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn

from buzzbotd import __version__, config
from buzzbotd.cli import access
from buzzbotd.cli.commands import COMMANDS
from buzzbotd.cli.exits import EX_CONFIG, EX_FAILURE, EX_TEMPFAIL
from buzzbotd.runtime import journal

logger = logging.getLogger("buzzbotd")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EX_FAILURE, f"{self.prog}: {message} (see buzzbotd --help)\n")


def parser() -> argparse.ArgumentParser:
    # --config is accepted before and after the command: a parent parser adds it
    # to each subcommand with SUPPRESS, so the later one wins and neither erases the other.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help=f"configuration file (default: $BUZZBOTD_CONFIG or "
                             f"{config.DEFAULT_PATH})")
    p = _Parser(prog="buzzbotd", parents=[common],
                description="Posts Bitcoin price updates to X and runs a Telegram bot.")
    p.add_argument("--version", action="version", version=f"buzzbotd {__version__}")
    commands = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    commands.add_parser("run", parents=[common], help="run the daemon in the foreground")
    commands.add_parser("check-config", parents=[common],
                        help="validate the configuration; exit 0 or 78")
    status = commands.add_parser("status", parents=[common],
                                 help="show posts, next slots, reminders and health (read-only)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    tweet = commands.add_parser("tweet", parents=[common],
                                help="show the tweet that would be posted now")
    tweet.add_argument("--dry-run", action="store_true", required=True,
                       help="fetch the price and print the tweet; post nothing")
    export = commands.add_parser("export", parents=[common],
                                 help="print users, reminders or posts as CSV or JSON "
                                      "(read-only)")
    export.add_argument("table", choices=("users", "reminders", "posts"),
                        help="the table to print (the same as the Google Sheets worksheets)")
    migrate = commands.add_parser("migrate-db", parents=[common],
                                  help="copy the SQLite state into an empty PostgreSQL database")
    migrate.add_argument("--to", metavar="URL", required=True,
                         help="postgresql://user@host:5432/dbname (password: the URL, "
                              "$PGPASSWORD or the credential database_password)")
    export.add_argument("--format", choices=("csv", "json"), default="csv",
                        help="csv (a header line, then one line per row) or json (an array "
                             "of objects); default csv")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    path = getattr(args, "config", None) or config.default_path()
    if args.command == "run":
        journal.setup("info")
    try:
        settings = config.load(path)
        access.check(args.command, settings)
        return COMMANDS[args.command](settings, args)
    except config.ConfigError as e:
        _fail(args.command, e.problems, "configuration error")
        return EX_CONFIG
    except PermissionError as e:
        _fail(args.command, [access.problem(e, args.command)], "not started")
        return EX_FAILURE
    except KeyboardInterrupt:
        return EX_FAILURE
    except Exception as e:  # noqa: BLE001 - mapped to an exit code and one clear line
        from buzzbotd.cli.ownership import WrongUser
        from buzzbotd.db import DatabaseError, DatabaseTooNew
        from buzzbotd.runtime.lock import LockHeld
        if isinstance(e, WrongUser):
            _fail(args.command, [str(e)], "not started")
            return EX_CONFIG
        if isinstance(e, LockHeld):
            _fail(args.command, [str(e)], "not started")
            return EX_TEMPFAIL
        if isinstance(e, DatabaseTooNew):
            _fail(args.command, [str(e)], "database error")
            return EX_CONFIG
        if isinstance(e, config.ListenError):
            _fail(args.command, [str(e)], "not started")
            return EX_FAILURE
        if isinstance(e, DatabaseError):
            _fail(args.command, [str(e)], "database error")
            return EX_FAILURE
        if args.command == "run":
            logger.critical("stopped by an unexpected error", exc_info=True)
        else:
            _fail(args.command, [f"{type(e).__name__}: {e}"], "unexpected error")
        return EX_FAILURE


def _fail(command: str, problems: list[str], what: str) -> None:
    if command == "run":
        for line in problems:
            logger.error("%s: %s", what, line)
    else:
        for line in problems:
            print(f"buzzbotd: {line}", file=sys.stderr)
