"""The work of each command, once cli/__init__.py has parsed the line and
loaded the configuration: one function a command, each returning its exit
code. Each imports what it needs when it runs, so `check-config` does not pay
for tweepy, telegram or peewee."""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys

from buzzbotd import config
from buzzbotd.cli.exits import EX_FAILURE, EX_OK
from buzzbotd.runtime import journal


def cmd_run(settings: config.Settings, args: argparse.Namespace) -> int:
    journal.setup(settings.daemon.log_level, settings.secrets())
    # Start-up allocates tens of thousands of long-lived objects (the imports of
    # telegram, tweepy, peewee) and frees almost none: collecting during it is
    # wasted work. The daemon re-enables the collector, after freezing those
    # objects out of its view, once it is READY.
    from buzzbotd.cli.ownership import check_run_as
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
        from buzzbotd.template import template_note
        if note := template_note(s.x.template):
            print(f"  note: {note}")
    else:
        print("  X posting off")
    if s.bluesky.enabled:
        print(f"  Bluesky posting on as {s.bluesky.handle} via {s.bluesky.service}")
    if s.mastodon.enabled:
        print(f"  Mastodon posting on via {s.mastodon.instance} ({s.mastodon.visibility})")
    if s.telegram.enabled and s.telegram.channel:
        print(f"  Telegram channel {s.telegram.channel}: each slot posted there too")
    for note in s.notes:
        print(f"  note: {note}")
    if s.telegram.enabled:
        print(f"  Telegram bot on via {s.telegram.api_base}; {len(s.telegram.admin_ids)} admin(s); "
              f"token from {s.telegram.token.source.split(' ')[0]}")
    else:
        print("  Telegram bot off")
    return EX_OK


def cmd_status(settings: config.Settings, args: argparse.Namespace) -> int:
    from buzzbotd.clock import utc_now
    from buzzbotd.ops import status
    pid = status.daemon_pid(settings.daemon.lock_file)
    db = _open_reader(settings, writer_running=pid is not None)
    try:
        report = status.collect(settings, utc_now())
        report["backend"] = "postgresql" if settings.database.url else "sqlite"
        if settings.database.url:
            from buzzbotd.config.database_url import masked
            from buzzbotd.db.postgres import daemons
            report["database"] = masked(settings.database.url)
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
    from buzzbotd.config.database_url import is_postgres_url, masked, without_password
    from buzzbotd.db.copy import copy
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
    from buzzbotd.posting.compose import ComposeError, compose_now
    from buzzbotd.price import PriceClient, PriceError
    from buzzbotd.template import template_note
    if note := template_note(settings.x.template):
        print(f"buzzbotd: note: {note}", file=sys.stderr)
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
    from buzzbotd.db import tables
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
