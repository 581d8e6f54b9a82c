"""What `buzzbotd status`, the bot's /status and systemd's STATUS= line show.

`collect()` reads only, so it runs the same way inside the daemon (through
the database owner) and in another process on a read-only connection.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from buzzbotd import __version__, timeofday
from buzzbotd.config import Settings
from buzzbotd.db import meta, tally
from buzzbotd.db.models import utc_text
from buzzbotd.db.raw import rows
from buzzbotd.posting import ledger
from buzzbotd.runtime.text import shorten

LAST_POSTS = 5
NEXT_SLOTS = 3
CONFLICT_SHOWN_FOR = timedelta(minutes=3)
READS_REFUSED_SHOWN_FOR = timedelta(days=1)    # as long as the poster stops reading
POST_COLUMNS = ("slot_key", "kind", "state", "tweet_id", "text", "reason", "attempts",
                "network", "url")


def collect(settings: Settings, now: datetime) -> dict[str, Any]:
    x = settings.x
    # Plain SQL: this runs twice a minute for the STATUS= line (buzzbotd.db.raw).
    posts = rows(f"SELECT {', '.join(POST_COLUMNS)} FROM post ORDER BY due_at DESC, id DESC "
                 "LIMIT ?", LAST_POSTS)
    failed = rows("SELECT COUNT(*) FROM post WHERE state = 'failed' AND due_at > ?",
                  utc_text(now - timedelta(days=1)))[0][0]
    networks = settings.networks()
    next_slots = []
    if networks:                    # one schedule ([posts]) for every network
        after = now
        for _ in range(NEXT_SLOTS):
            after = timeofday.next_occurrence(x.times, x.zone, after)
            next_slots.append({"slot_key": timeofday.slot_key(after),
                               "local": timeofday.local_label(after, x.zone)})
    reminders = tally.reminders()      # kept by triggers: no scan of every reminder
    values = meta.snapshot()
    heartbeat = meta.as_time(values.get(meta.HEARTBEAT))
    conflict = meta.as_time(values.get(meta.TELEGRAM_CONFLICT))
    usage = ledger.month_usage(now, values)
    refused = ledger.reads_refused(values)
    return {
        "version": __version__,
        "database": str(settings.daemon.database),
        "x": {
            "enabled": x.enabled,
            "networks": networks,           # every network a slot is posted to
            "paused": values.get(meta.PAUSED) == "1",
            "last_posts": [dict(zip(POST_COLUMNS, p, strict=True)) for p in posts],
            "next_slots": next_slots,
            "failed_last_day": failed,
            # This month's (UTC) requests by kind and estimated spend (X's prices in [x]).
            "requests_this_month": usage["requests"],
            "spend_usd_this_month": usage["spend_usd"],
            "reads_refused": (f"timeline reads refused by X (plan) since "
                              f"{timeofday.slot_key(refused[0])}: {refused[1]}"
                              if refused and now - refused[0] < READS_REFUSED_SHOWN_FOR
                              else None),
        },
        "telegram": {
            "enabled": settings.telegram.enabled,
            "users": tally.users(),
            "reminders_enabled": reminders[True],
            "reminders_disabled": reminders[False],
            "last_conflict_at": values.get(meta.TELEGRAM_CONFLICT),
            # The bot records a conflict at most once a minute while it lasts.
            "conflict_now": bool(conflict and now - conflict < CONFLICT_SHOWN_FOR),
        },
        "price": _price(values.get(meta.PRICE_SOURCE)),
        "sheets": {
            "enabled": settings.sheets.enabled,
            "spreadsheet_id": settings.sheets.spreadsheet_id,
            "last_ok_at": values.get(meta.SHEETS_LAST_OK) or None,
            "last_error": values.get(meta.SHEETS_LAST_ERROR) or None,
            "failing_since": values.get(meta.SHEETS_FAILING_SINCE) or None,
        },
        "health": {
            "heartbeat_at": timeofday.slot_key(heartbeat) if heartbeat else None,
            "heartbeat_age_s": round((now - heartbeat).total_seconds()) if heartbeat else None,
            "problems": values.get(meta.HEALTH) or "",
            # Parts that are up but not doing their work, as the daemon last wrote them.
            "degraded": {part: {"reason": reason, "since": since} for part, (reason, since)
                         in json.loads(values.get(meta.DEGRADED) or "{}").items()},
        },
    }


def _price(recorded: str | None) -> dict[str, Any]:
    """Where the last good price came from (coingecko, or a fallback) and when."""
    source, _, at = (recorded or "").partition(" ")
    return {"source": source or None, "fetched_at": at or None}


def daemon_pid(lock_file: Path) -> int | None:
    """The pid of the running daemon, from its lock file, if that process is buzzbotd."""
    try:
        pid = int(Path(lock_file).read_text().strip() or 0)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if pid and b"buzzbotd" in cmdline else None


def degraded_meta(degraded: dict[str, tuple[str, datetime]]) -> str:
    """ops.health.Health.degraded() as the daemon writes it for `status` to read."""
    return json.dumps({part: [reason, timeofday.slot_key(since)]
                       for part, (reason, since) in sorted(degraded.items())})


def heartbeat(settings: Settings, now: datetime, hung: list[str],
              degraded: dict[str, tuple[str, datetime]], quote: Any = None) -> dict[str, Any]:
    """In the owner: the leader's heartbeat and health recorded for `status`, with the
    last good price's source and time (`quote`, if there is one); the report."""
    values = {meta.HEARTBEAT: utc_text(now), meta.HEALTH: "; ".join(hung),
              meta.DEGRADED: degraded_meta(degraded)}
    if quote is not None:
        values[meta.PRICE_SOURCE] = f"{quote.source} {utc_text(quote.fetched_at)}"
    meta.put_many(values)
    return collect(settings, now)


def status_line(report: dict[str, Any]) -> str:
    """One line for systemd's STATUS=, e.g. 'ready: next tweet 16:00 UTC, 12 reminders',
    or 'degraded: telegram: … since …; next tweet …' when a part is not doing its work."""
    degraded = report["health"].get("degraded") or {}
    if "clock" in degraded:
        return f"waiting for the clock: {degraded['clock']['reason']}"
    parts = []
    x = report["x"]
    networks = x.get("networks", ["x"] if x["enabled"] else [])
    if not networks:
        parts.append("X posting off")
    elif x["paused"]:
        parts.append("X posting paused" if networks == ["x"] else "posting paused")
    elif x["next_slots"]:
        # "next tweet" while X posts (as it always read); else the networks named.
        what = "tweet" if "x" in networks else f"post ({', '.join(networks)})"
        parts.append(f"next {what} {x['next_slots'][0]['local']}")
    telegram = report["telegram"]
    if telegram["enabled"]:
        parts.append(_count(telegram["reminders_enabled"], "reminder"))
        if telegram["conflict_now"]:
            parts.append("409 Conflict: another bot instance polls this token")
    else:
        parts.append("Telegram off")
    sheets = report.get("sheets") or {}
    if sheets.get("enabled") and sheets.get("last_error"):
        # Only a failing sync is worth the space on `systemctl status`.
        parts.append(f"Sheets sync failing since {sheets['failing_since']}: "
                     f"{_shorten(sheets['last_error'], 80)}")
    if degraded:
        return "degraded: " + "; ".join(f"{part}: {d['reason']} since {d['since']}"
                                        for part, d in degraded.items()) + "; " + ", ".join(parts)
    return "ready: " + ", ".join(parts)


def render(report: dict[str, Any], pid: int | None) -> str:
    """The human-readable `buzzbotd status`."""
    x, telegram, health = report["x"], report["telegram"], report["health"]
    lines = [f"buzzbotd {report['version']}  database {report['database']}"]
    if pid:
        age = health["heartbeat_age_s"]
        lines.append(f"daemon: running (pid {pid}), last heartbeat "
                     f"{'never' if age is None else f'{age}s ago'}"
                     + (f", problems: {health['problems']}" if health["problems"] else ", healthy"))
        for part, d in health.get("degraded", {}).items():
            lines.append(f"  DEGRADED {part} since {d['since']}: {d['reason']}")
    else:
        lines.append("daemon: not running")
    networks = x.get("networks", ["x"] if x["enabled"] else [])
    if not networks:
        lines.append("X posting: off (x.enabled = false)")
    else:
        lines.append(("X posting: " if networks == ["x"] else
                      f"Posting to {', '.join(networks)}: ")
                     + ("PAUSED (/resume to restart)" if x["paused"] else "on")
                     + f", {x['failed_last_day']} failed in the last 24h")
        lines.append("  next slots: " + (", ".join(f"{s['local']} ({s['slot_key']})"
                                                    for s in x["next_slots"]) or "none"))
        requests = ", ".join(f"{n} {kind}" for kind, n in sorted(
            x["requests_this_month"].items())) or "none"
        lines.append(f"  this month: X requests {requests}; estimated spend "
                     f"${x['spend_usd_this_month']:.3f}")
        if x["reads_refused"]:
            lines.append(f"  {x['reads_refused']}")
        lines.append("  last posts:" if x["last_posts"] else "  last posts: none yet")
        for p in x["last_posts"]:
            if p["network"] == "x":
                name = p["slot_key"]
                detail = f"tweet {p['tweet_id']}" if p["tweet_id"] else (p["reason"] or "")
            else:
                name = f"{p['slot_key']} {p['network']}"
                detail = (p["url"] or p["tweet_id"] or "") if p["state"] == "posted" else (
                    p["reason"] or "")
            lines.append(f"    {name:<32} {p['state']:<8} {detail}")
    if not telegram["enabled"]:
        lines.append("Telegram bot: off (telegram.enabled = false)")
    else:
        lines.append(f"Telegram bot: {_count(telegram['users'], 'user')}, "
                     f"{telegram['reminders_enabled']} reminders on, "
                     f"{telegram['reminders_disabled']} off")
        if telegram["last_conflict_at"]:
            lines.append(f"  WARNING: another instance polled this token at "
                         f"{telegram['last_conflict_at']} (409 Conflict)")
    price = report.get("price") or {}
    if price.get("source"):
        lines.append(f"Price: last good quote from {price['source']} at {price['fetched_at']}")
    sheets = report.get("sheets") or {}
    if not sheets.get("enabled"):
        lines.append("Google Sheets: off (sheets.enabled = false)")
    else:
        lines.append(f"Google Sheets: spreadsheet {sheets['spreadsheet_id']}, last synced "
                     f"{sheets['last_ok_at'] or 'never'}")
        if sheets["last_error"]:
            lines.append(f"  FAILING since {sheets['failing_since']}: {sheets['last_error']}")
    return "\n".join(lines)


def _shorten(text: str, limit: int) -> str:
    """At most `limit` characters, in Latin-1: sdnotify encodes STATUS= as Latin-1
    and silently drops a message it cannot encode."""
    return shorten(text, limit).encode("latin-1", "replace").decode("latin-1")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
