"""The status page (GET /) and the counts behind /metrics.

`collect()` and `gauges()` run inside the database owner and read only;
`render()` makes one self-contained HTML page: inline CSS, the 30-day price
chart as inline SVG, no script, no external asset (it works offline and on a
phone), refreshed by the browser every REFRESH_S. Nothing in it identifies a
user: reminders are shown as counts per timezone.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from html import escape
from typing import Any

from buzzbotd import timeofday
from buzzbotd.config import Settings
from buzzbotd.db import meta, tally
from buzzbotd.db.models import Post
from buzzbotd.ops import status
from buzzbotd.posting import ledger

REFRESH_S = 60
CHART_DAYS = 30
FAILURES_SHOWN = 50
CHART_W, CHART_H, PAD = 640, 220, 36
TWEET_URL = "https://x.com/i/web/status/{}"


# -- inside the database owner ------------------------------------------------------


def gauges(settings: Settings, now: datetime) -> dict[str, Any]:
    """The values /metrics reads from the database at each scrape: counts kept by
    triggers (buzzbotd.db.tally) and one index lookup, whatever the database's size."""
    reminders = tally.reminders()
    last_row = (Post.select(Post.updated_at).where(Post.state == "posted")
                .order_by(Post.updated_at.desc()).first())
    last = last_row.updated_at if last_row else None
    x = settings.x
    return {
        "users": tally.users(),
        "reminders_enabled": reminders[True],
        "reminders_disabled": reminders[False],
        "last_post": last.timestamp() if last else None,
        "next_slot": (timeofday.next_occurrence(x.times, x.zone, now).timestamp()
                      if settings.networks() else None),
        "paused": meta.paused(),
        "x_spend_usd": ledger.month_usage(now)["spend_usd"],
    }


def collect(settings: Settings, now: datetime) -> dict[str, Any]:
    """Everything the page shows."""
    since = now - timedelta(days=CHART_DAYS)
    # One point per slot, however many networks it went to.
    chart = list({p.slot_key: (p.slot_key, p.due_at, p.price) for p in
                  Post.select(Post.slot_key, Post.due_at, Post.price)
                  .where((Post.due_at > since) & (Post.state == "posted")
                         & Post.price.is_null(False))
                  .order_by(Post.due_at)}.values())
    failures = [{"slot_key": p.slot_key, "network": p.network, "state": p.state,
                 "reason": p.reason or ""} for p in
                Post.select(Post.slot_key, Post.network, Post.state, Post.reason)
                .where(Post.state.in_(("failed", "skipped"))
                       & (Post.due_at > now - timedelta(days=1)))
                .order_by(Post.due_at.desc()).limit(FAILURES_SHOWN)]
    by_zone = sorted(((zone, n) for enabled, zone, n in tally.reminders_by_zone() if enabled),
                     key=lambda row: (-row[1], row[0]))
    return {"report": status.collect(settings, now), "chart": chart, "failures": failures,
            "reminders_by_zone": by_zone}


# -- the HTML -----------------------------------------------------------------------

CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;padding:12px;max-width:960px;
color:#1b1f24;background:#fafafa}
h1{font-size:1.3em;margin:.2em 0}h2{font-size:1.05em;margin:1.2em 0 .4em}
.ok{color:#11691f}.bad{color:#b00020}.muted{color:#666}
table{border-collapse:collapse;width:100%}td,th{padding:4px 6px;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}th{font-weight:600}
.scroll{overflow-x:auto}.text{overflow-wrap:anywhere}
svg{width:100%;height:auto;background:#fff;border:1px solid #ddd}
@media (max-width:480px){body{font-size:14px;padding:8px}td,th{padding:3px 4px}
.wide{display:none}}
"""


def render(data: dict[str, Any], parts: dict[str, str], now: datetime) -> str:
    report = data["report"]
    x, telegram = report["x"], report["telegram"]
    healthy = all(v == "ok" for v in parts.values())
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="refresh" content="{REFRESH_S}">',
        f"<title>buzzbotd {'ok' if healthy else 'PROBLEM'}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>buzzbotd {escape(report['version'])} "
        f"<span class=\"{'ok' if healthy else 'bad'}\" id=\"verdict\">"
        f"{'healthy' if healthy else 'needs attention'}</span></h1>",
        f'<p class="muted">As of {now:%Y-%m-%d %H:%M:%S} UTC; this page refreshes every '
        f"{REFRESH_S} s.</p>",
        "<h2>Health</h2><table id=\"health\">",
    ]
    for part, verdict in parts.items():
        cls = "ok" if verdict == "ok" else "bad"
        out.append(f'<tr><th>{escape(part)}</th><td class="{cls}">{escape(verdict)}</td></tr>')
    out.append("</table>")

    networks = x.get("networks") or []
    out.append("<h2>Posting</h2>")
    if not networks:
        out.append("<p>Off (no network enabled: x, bluesky, mastodon, telegram.channel).</p>")
    else:
        out.append(f"<p>To {escape(', '.join(networks))}.</p>")
        out.append("<p>" + ("<b class=\"bad\">Paused</b> (/resume restarts it)."
                            if x["paused"] else "On.")
                   + f" {x['failed_last_day']} failed in the last 24 h.</p>")
        nexts = ", ".join(f"{escape(s['slot_key'][:10])} {escape(s['local'])}"
                          for s in x["next_slots"])
        out.append(f"<p>Next slots: {nexts or 'none'}</p>")
        requests = ", ".join(f"{n} {escape(kind)}" for kind, n in sorted(
            (x.get("requests_this_month") or {}).items())) or "none"
        out.append(f"<p>This month: X requests {requests}; estimated spend "
                   f"${x.get('spend_usd_this_month') or 0:.3f}.</p>")
        if x.get("reads_refused"):
            out.append(f"<p class=\"bad\">{escape(x['reads_refused'])}</p>")
    out.append('<div class="scroll"><table id="posts"><tr><th>slot</th><th>network</th>'
               '<th>state</th><th>post</th></tr>')
    for p in x["last_posts"]:
        url = p.get("url") or (TWEET_URL.format(p["tweet_id"])
                               if p.get("network", "x") == "x" and p["tweet_id"] else None)
        if url and p["state"] == "posted":
            link = f'<a href="{escape(url)}">{escape(p["text"] or p["tweet_id"] or url)}</a>'
        else:
            link = escape(p["text"] or p["reason"] or "")
        out.append(f"<tr><td>{escape(p['slot_key'])}</td>"
                   f"<td>{escape(p.get('network') or 'x')}</td><td>{escape(p['state'])}</td>"
                   f'<td class="text">{link}</td></tr>')
    if not x["last_posts"]:
        out.append('<tr><td colspan="4" class="muted">no posts yet</td></tr>')
    out.append("</table></div>")

    out.append(f"<h2>Price posted, last {CHART_DAYS} days</h2>")
    out.append(chart_svg(data["chart"], now))

    out.append("<h2>Failures, last 24 h</h2>")
    if data["failures"]:
        out.append('<div class="scroll"><table id="failures"><tr><th>slot</th><th>network</th>'
                   "<th>state</th><th>why</th></tr>")
        for f in data["failures"]:
            out.append(f"<tr><td>{escape(f['slot_key'])}</td><td>{escape(f['network'])}</td>"
                       f"<td>{escape(f['state'])}</td>"
                       f'<td class="text">{escape(f["reason"])}</td></tr>')
        out.append("</table></div>")
    else:
        out.append('<p id="failures" class="ok">None.</p>')

    out.append("<h2>Telegram</h2>")
    if not telegram["enabled"]:
        out.append("<p>Off (telegram.enabled = false).</p>")
    else:
        out.append(f"<p>{telegram['users']} users, {telegram['reminders_enabled']} reminders "
                   f"on, {telegram['reminders_disabled']} off."
                   + (" <b class=\"bad\">409 Conflict: another bot instance polls this "
                      "token.</b>" if telegram["conflict_now"] else "") + "</p>")
    out.append('<table id="zones"><tr><th>timezone</th><th>reminders</th></tr>')
    for zone, count in data["reminders_by_zone"]:
        out.append(f"<tr><td>{escape(zone)}</td><td>{count}</td></tr>")
    out.append("</table>")
    out.append('<p class="muted">Also: <a href="/health">/health</a>, '
               '<a href="/metrics">/metrics</a>, <a href="/api/status">/api/status</a></p>')
    out.append("</body></html>")
    return "\n".join(out)


def chart_svg(points: list[tuple[str, datetime, float]], now: datetime) -> str:
    """The posted prices as a line with one dot per posted slot, scaled to the 30 days."""
    start = now - timedelta(days=CHART_DAYS)
    span = (now - start).total_seconds()
    head = (f'<svg id="chart" viewBox="0 0 {CHART_W} {CHART_H}" role="img" '
            f'xmlns="http://www.w3.org/2000/svg" aria-label="price posted over '
            f'{CHART_DAYS} days">')
    if not points:
        return head + (f'<text x="{CHART_W / 2}" y="{CHART_H / 2}" text-anchor="middle" '
                       'fill="#666">no posts with a price yet</text></svg>')
    prices = [p for _, _, p in points]
    low, high = min(prices), max(prices)
    if high - low < 1e-9:
        low, high = low - 1, high + 1
    inner_w, inner_h = CHART_W - 2 * PAD, CHART_H - 2 * PAD

    def xy(when: datetime, price: float) -> tuple[float, float]:
        x = PAD + inner_w * max(0.0, (when - start).total_seconds()) / span
        y = PAD + inner_h * (1 - (price - low) / (high - low))
        return round(x, 1), round(y, 1)

    coords = [xy(when, price) for _, when, price in points]
    line = " ".join(f"{x},{y}" for x, y in coords)
    out = [head,
           f'<line x1="{PAD}" y1="{CHART_H - PAD}" x2="{CHART_W - PAD}" y2="{CHART_H - PAD}" '
           'stroke="#bbb"/>',
           f'<text x="{PAD}" y="{PAD - 8}" font-size="12" fill="#444">${high:,.0f}</text>',
           f'<text x="{PAD}" y="{CHART_H - 8}" font-size="12" fill="#444">${low:,.0f} · '
           f'{start:%d %b}</text>',
           f'<text x="{CHART_W - PAD}" y="{CHART_H - 8}" font-size="12" fill="#444" '
           f'text-anchor="end">{now:%d %b}</text>',
           f'<polyline fill="none" stroke="#f7931a" stroke-width="2" points="{line}"/>']
    for (key, _, price), (x, y) in zip(points, coords, strict=True):
        out.append(f'<circle class="pt" cx="{x}" cy="{y}" r="2.5" fill="#f7931a">'
                   f"<title>{escape(key)}: ${price:,.2f}</title></circle>")
    out.append("</svg>")
    return "".join(out)
