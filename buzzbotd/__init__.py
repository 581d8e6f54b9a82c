"""buzzbotd, one daemon that posts the Bitcoin price to X at fixed times, exactly
once per slot, and runs a Telegram bot with per-user reminders. The package
itself holds only its version (and keeps psycopg out of peewee's import)."""

import sys

__version__ = "0.2.0"

# peewee imports psycopg at its own import whenever it is installed (~150 ms and
# ~23 MiB: it loads libpq); only a PostgreSQL database.url needs it, and
# buzzbotd.db.postgres.load_driver() imports it then.
sys.modules.setdefault("psycopg", None)  # type: ignore[arg-type]
