"""What X costs: this month's (UTC) requests by kind and estimated spend, kept in
the database (ledger.add_usage), and the monthly budget with its alerts.

An estimate from X's prices as configured (`x.price_*_usd`): X's bill is the
truth. With `x.monthly_budget_usd` set, the admins are told once when the
spend passes BUDGET_WARNING_AT of it, and a slot whose post would pass it is
skipped ("monthly X budget reached"; the ledger's skip alerts).
"""

from __future__ import annotations

import logging

from buzzbotd.clock import Clock
from buzzbotd.config import XSettings
from buzzbotd.db import DatabaseOwner
from buzzbotd.ops.health import HEALTH
from buzzbotd.posting import ledger

log = logging.getLogger("buzzbotd.x")
BUDGET_REACHED = "monthly X budget reached"
BUDGET_WARNING_AT = 0.8


class Spend:
    def __init__(self, settings: XSettings, owner: DatabaseOwner, clock: Clock) -> None:
        self.budget = settings.monthly_budget_usd
        self.owner = owner
        self.clock = clock

    def count(self, kind: str, usd: float) -> None:
        """One X request of `kind` that cost `usd` (XNetwork's on_request)."""
        now = self.clock()
        try:
            total = self.owner.call(ledger.add_usage, kind, usd, now)
        except Exception as e:  # noqa: BLE001 - a lost count must not cost the slot
            log.warning("X %s request not counted in this month's usage: %s", kind, e)
            return
        if total == usd:
            HEALTH.clear("x_budget")               # a new month
        if self.budget > 0 and total - usd < BUDGET_WARNING_AT * self.budget <= total:
            HEALTH.problem("x_budget", f"X spend this month is ${total:.2f}, "
                            f"{total / self.budget:.0%} of x.monthly_budget_usd "
                            f"${self.budget:.2f}; slots are skipped once it is reached "
                            f"({now:%Y-%m} UTC)")

    def refusal(self, cost: float) -> str | None:
        """Why a post costing `cost` now would pass the budget, or None."""
        if self.budget <= 0:
            return None
        spent = self.owner.call(ledger.month_usage, self.clock())["spend_usd"]
        if spent + cost <= self.budget + 1e-9:
            return None
        return (f"{BUDGET_REACHED}: ${spent:.2f} of x.monthly_budget_usd ${self.budget:.2f} "
                f"spent this month; this post would cost ${cost:.3f}")
