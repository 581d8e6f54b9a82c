"""The command line: `buzzbotd [--config PATH] COMMAND`.

Exit codes (SPEC): 0 clean stop, 78 configuration error (EX_CONFIG) or
`run` as root on another user's state (a restart cannot fix either),
75 another instance holds the lock (EX_TEMPFAIL), 1 anything else.
Bad input never gets a traceback: it gets the file, key, value and what is
expected.
"""

from __future__ import annotations

import argparse
import gc
import grp
import json
import logging
import os
import pwd
import sys
from pathlib import Path
from typing import NoReturn

from buzzbotd import __version__, config, log

EX_OK = 0
EX_FAILURE = 1
EX_TEMPFAIL = 75
EX_CONFIG = 78

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
        log.setup("info")
    try:
        settings = config.load(path)
        _check_access(args.command, settings)
        return COMMANDS[args.command](settings, args)
    except config.ConfigError as e:
        _fail(args.command, e.problems, "configuration error")
        return EX_CONFIG
    except PermissionError as e:
        _fail(args.command, [_permission_problem(e, args.command)], "not started")
        return EX_FAILURE
    except KeyboardInterrupt:
        return EX_FAILURE
    except Exception as e:  # noqa: BLE001 - mapped to an exit code and one clear line
        from buzzbotd.db import DatabaseError, DatabaseTooNew
        from buzzbotd.lock import LockHeld
        from buzzbotd.ownership import WrongUser
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


def _check_access(command: str, settings: config.Settings) -> None:
    """Finds, before any work, a directory or file this user may not use.

    SQLite reports an unwritable directory as "unable to open database file",
    which reads like a damaged database; an operator who ran the command as
    the wrong user needs the path and the user instead (raised as
    PermissionError, reported by main()).
    """
    d = settings.daemon
    if command == "run" and settings.database.url:
        needs = [(d.state_dir, os.W_OK | os.X_OK), (d.lock_file.parent, os.W_OK | os.X_OK)]
    elif command in ("status", "export") and settings.database.url:
        return
    elif command == "run":
        needs = [(d.state_dir, os.W_OK | os.X_OK), (d.database, os.R_OK | os.W_OK),
                 (d.lock_file.parent, os.W_OK | os.X_OK)]
    elif command == "status":
        needs = [(d.state_dir, os.X_OK), (d.database, os.R_OK)]
    else:
        return
    for path, mode in needs:
        if not os.access(_existing(path), mode):
            raise PermissionError(13, "Permission denied", str(path))


def _existing(path: str | os.PathLike[str]) -> Path:
    """The path itself if it exists, else its nearest existing parent (the
    one a mkdir or create would need to write)."""
    p = Path(path)
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def _permission_problem(e: PermissionError, command: str) -> str:
    """One line: the path, who is asking, who owns what is in the way, and
    what to do."""
    user = _user_name(os.geteuid())
    path = e.filename or "?"
    where = _existing(path)
    try:
        st = os.stat(where)
        owner = (f"{where} is owned by {_user_name(st.st_uid)}:{_group_name(st.st_gid)}, "
                 f"mode {st.st_mode & 0o7777:04o}")
    except OSError:
        owner = f"{where} cannot be inspected"
    what = "permission denied" if str(where) == str(path) else "cannot be created"
    return (f"{path}: {what} for user {user} ({owner}); run 'buzzbotd {command}' as "
            f"root or as the user that owns it (the package's: "
            f"sudo -u buzzbotd buzzbotd {command})")


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _fail(command: str, problems: list[str], what: str) -> None:
    if command == "run":
        for line in problems:
            logger.error("%s: %s", what, line)
    else:
        for line in problems:
            print(f"buzzbotd: {line}", file=sys.stderr)


def cmd_run(settings: config.Settings, args: argparse.Namespace) -> int:
    log.setup(settings.daemon.log_level, settings.secrets())
    # Start-up allocates tens of thousands of long-lived objects (the imports of
    # telegram, tweepy, peewee) and frees almost none: collecting during it is
    # wasted work. The daemon re-enables the collector, after freezing those
    # objects out of its view, once it is READY.
    from buzzbotd.ownership import check_run_as
    check_run_as(settings)
    gc.disable()
    from buzzbotd.daemon import Daemon
    return Daemon(settings).run()


def cmd_check_config(settings: config.Settings, args: argparse.Namespace) -> int:
    s = settings
    print(f"{s.path}: OK")
    print(f"  state_dir {s.daemon.state_dir}, lock_file {s.daemon.lock_file}, "
          f"log_level {s.daemon.log_level}")
    if s.x.enabled:
        times = ", ".join(t.isoformat("minutes" if not t.second else "seconds") for t in s.x.times)
        print(f"  X posting on: {times} {s.x.timezone} (grace {s.x.grace_s}s) via {s.x.api_base}; "
              f"credentials from {s.x.consumer_key.source.split(' ')[0]}")
    else:
        print("  X posting off")
    if s.telegram.enabled:
        print(f"  Telegram bot on via {s.telegram.api_base}; {len(s.telegram.admin_ids)} admin(s); "
              f"token from {s.telegram.token.source.split(' ')[0]}")
    else:
        print("  Telegram bot off")
    return EX_OK


def cmd_status(settings: config.Settings, args: argparse.Namespace) -> int:
    from buzzbotd import status
    from buzzbotd.clock import utc_now
    pid = status.daemon_pid(settings.daemon.lock_file)
    db = _open_reader(settings, writer_running=pid is not None)
    try:
        report = status.collect(settings, utc_now())
        report["backend"] = "postgresql" if settings.database.url else "sqlite"
        if settings.database.url:
            from buzzbotd.db.postgres import daemons
            report["database"] = settings.database.url      # never with its password
            report["daemons"] = daemons()
    finally:
        db.close()
    if args.json:
        report["health"]["pid"] = pid
        print(json.dumps(report, indent=2))
    else:
        print(status.render(report, pid))
        print(f"backend {report['backend']}")
        for node in report.get("daemons", []):
            print(f"  daemon {node['host']} pid {node['pid']}: {node['role']}"
                  f"{' (the leader)' if node['leader'] else ''}, seen {node['seen_at']}")
    return EX_OK


def _open_reader(settings: config.Settings, writer_running: bool = True) -> object:
    if settings.database.url:
        from buzzbotd.db.postgres import open_readonly as open_postgres
        return open_postgres(settings.database.url, settings.database.password.reveal() or None)
    from buzzbotd.db import open_readonly
    return open_readonly(settings.daemon.database, writer_running=writer_running)


def cmd_migrate_db(settings: config.Settings, args: argparse.Namespace) -> int:
    from buzzbotd.db.copy import copy
    from buzzbotd.db.postgres import is_postgres_url, masked, without_password
    url, password = without_password(args.to)
    if not is_postgres_url(url):
        raise config.ConfigError([f"--to {masked(args.to)}: expected a PostgreSQL URL, "
                                  'e.g. "postgresql://buzzbotd@db.example:5432/buzzbotd"'])
    password = password or settings.database.password.reveal() or None
    counts = copy(settings.daemon.database, url, password)
    print(f"copied {settings.daemon.database} to {masked(url)}: "
          + ", ".join(f"{table} {rows}" for table, rows in counts.items())
          + " rows; counts verified")
    print(f'set [database] url = "{url}" in {settings.path} and restart buzzbotd')
    return EX_OK


def cmd_tweet(settings: config.Settings, args: argparse.Namespace) -> int:
    from buzzbotd.clock import utc_now
    from buzzbotd.price import PriceClient, PriceError
    from buzzbotd.x import ComposeError, compose_now
    try:
        text = compose_now(settings, PriceClient(settings.price), utc_now())
    except PriceError as e:
        print(f"buzzbotd: cannot fetch the price from {settings.price.url}: {e}", file=sys.stderr)
        return EX_FAILURE
    except ComposeError as e:
        print(f"buzzbotd: {settings.path}: {e}", file=sys.stderr)
        return EX_FAILURE
    print(text)
    return EX_OK


def cmd_export(settings: config.Settings, args: argparse.Namespace) -> int:
    from buzzbotd import tables
    table = tables.TABLES[args.table]
    write = tables.write_json if args.format == "json" else tables.write_csv
    db = _open_reader(settings)
    try:
        # One read transaction: every page comes from the same snapshot (WAL),
        # while the daemon goes on writing.
        with db.atomic():
            write(table, tables.pages(table), sys.stdout)
    except BrokenPipeError:        # `buzzbotd export users | head`: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        db.close()
    return EX_OK


COMMANDS = {
    "run": cmd_run,
    "check-config": cmd_check_config,
    "status": cmd_status,
    "tweet": cmd_tweet,
    "export": cmd_export,
    "migrate-db": cmd_migrate_db,
}
