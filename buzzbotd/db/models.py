"""The tables, as peewee models. The schema itself is made by migrations.py.

Instants are stored as ISO 8601 UTC text ("2026-11-22T08:00:00Z"): sortable,
readable in the sqlite3 shell, and never ambiguous about the zone.
"""

from __future__ import annotations

from datetime import UTC, datetime

import peewee

# An instant is stored as the same text that keys its slot: one function for both.
from buzzbotd.timeofday import slot_key as utc_text

# Bound to the real database by DatabaseOwner (read-write) or open_readonly().
database = peewee.DatabaseProxy()


def parse_utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


class UtcField(peewee.TextField):
    """An aware datetime, stored as ISO 8601 UTC text."""

    def db_value(self, value: datetime | None) -> str | None:
        return None if value is None else utc_text(value)

    def python_value(self, value: str | None) -> datetime | None:
        return None if value is None else parse_utc(value)


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False


class Meta(BaseModel):
    """Small daemon state that must survive restarts (pause flag, first start…)."""

    key = peewee.TextField(primary_key=True)
    value = peewee.TextField()

    class Meta:
        table_name = "meta"


class Post(BaseModel):
    """The X ledger: one row per slot, claimed before anything is sent."""

    slot_key = peewee.TextField()
    network = peewee.TextField(default="x")   # x | bluesky | mastodon | channel
    kind = peewee.TextField()          # scheduled | manual
    due_at = UtcField(index=True)
    state = peewee.TextField()         # claimed | sending | posted | failed | skipped | unknown
    text = peewee.TextField(null=True)
    price = peewee.FloatField(null=True)   # USD, the quote the text was composed from
    tweet_id = peewee.TextField(null=True)    # the network's id of the post
    attempts = peewee.IntegerField(default=0)
    reason = peewee.TextField(null=True)
    created_at = UtcField()
    updated_at = UtcField()
    url = peewee.TextField(null=True)         # where a person sees the post


class PostEvent(BaseModel):
    """Every claim, attempt, retry, failure, skip and confirmation of a post."""

    post = peewee.ForeignKeyField(Post, backref="events", on_delete="CASCADE")
    at = UtcField()
    event = peewee.TextField()
    detail = peewee.TextField(null=True)


class TelegramUser(BaseModel):
    id = peewee.BigIntegerField(primary_key=True)   # Telegram user id
    chat_id = peewee.BigIntegerField()
    timezone = peewee.TextField()      # IANA name or fixed offset "+05:30"; never NULL
    blocked = peewee.BooleanField(default=False)
    created_at = UtcField()
    updated_at = UtcField()
    currency = peewee.TextField(null=True)   # /currency; NULL: price.currencies[0]

    class Meta:
        table_name = "telegram_user"


class Reminder(BaseModel):
    user = peewee.ForeignKeyField(TelegramUser, backref="reminders", on_delete="CASCADE")
    chat_id = peewee.BigIntegerField()
    local_time = peewee.TextField()    # "HH:MM"
    timezone = peewee.TextField()      # never NULL: the seed bots' silent failure
    next_due_at = UtcField()
    last_sent_local_date = peewee.TextField(null=True)   # "YYYY-MM-DD": the day it was for
    last_sent_at = UtcField(null=True)                  # when it was last sent
    enabled = peewee.BooleanField(default=True)
    created_at = UtcField()
    # Weekday bits, Monday = 1; the schema's default is 127 (daily). No default here, so
    # that writing a row does not name a column an older schema lacks.
    days = peewee.IntegerField(null=True)


class PriceAlert(BaseModel):
    """A /alert. Its next trigger is up_level (the price rose to it) or down_level (fell
    to it), indexed per currency; what a trigger does depends on `state`
    (buzzbotd.pricealerts.crossing)."""

    owner_id = peewee.BigIntegerField(index=True)   # the user, or the sender chat in groups
    chat_id = peewee.BigIntegerField()
    kind = peewee.TextField()          # above | below | move
    currency = peewee.TextField()
    level = peewee.FloatField()        # the price of above/below; the percentage of move
    repeats = peewee.BooleanField(default=False)
    reference = peewee.FloatField(null=True)   # move: the price of its last message
    state = peewee.TextField()         # armed | rearming | fired
    up_level = peewee.FloatField(null=True)
    down_level = peewee.FloatField(null=True)
    enabled = peewee.BooleanField(default=True)
    created_at = UtcField()
    fired_at = UtcField(null=True)

    class Meta:
        table_name = "price_alert"


class AlertMessage(BaseModel):
    """A crossing, recorded before its message is sent: the outbox of price alerts."""

    alert_id = peewee.BigIntegerField()
    chat_id = peewee.BigIntegerField()
    kind = peewee.TextField()
    currency = peewee.TextField()
    level = peewee.FloatField()
    reference = peewee.FloatField(null=True)
    price = peewee.FloatField()
    created_at = UtcField()
    sent_at = UtcField(null=True)
    outcome = peewee.TextField(null=True)   # sent | blocked | failed (given up)

    class Meta:
        table_name = "alert_message"


MODELS = [Meta, Post, PostEvent, TelegramUser, Reminder, PriceAlert, AlertMessage]
