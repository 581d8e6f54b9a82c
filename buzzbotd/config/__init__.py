"""The configuration file: TOML validated into an immutable `Settings`.

Each key is declared once below, as a field of its section: its kind
(kinds.py: what the value may be, and what to say when it is not) and
its default. `load` checks every section with the same loop, then the few
checks that span keys (listed in `_read`). Every problem is reported as
`file: key = value: expected …` and all problems are collected before
failing, so an operator fixes the file in one pass. Secrets are wrapped in
`Secret`, which never prints its value; where they come from is
credentials.py.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Any

from buzzbotd.config import credentials
from buzzbotd.config.database_url import masked
from buzzbotd.config.keys import Check, Secret, did_you_mean, key, read_section
from buzzbotd.config.kinds import (
    Choice,
    Currencies,
    FilePath,
    Flag,
    Listen,
    Names,
    PostgresUrl,
    Seconds,
    SecretText,
    Template,
    Text,
    TimesOfDay,
    Url,
    Usd,
    UserIds,
    Zone,
)
from buzzbotd.config.networks import (
    DEFAULT_TEMPLATE,
    DEFAULT_TIMES,
    GRACE_FLOOR_S,
    SCHEDULE_KEYS,
    BlueskySettings,
    Channel,
    MastodonSettings,
    PostsSettings,
    Zoned,
    network_template,
    schedule,
)
from buzzbotd.template import template_currencies

DEFAULT_PATH = Path("/etc/buzzbotd/buzzbotd.toml")
LOG_LEVELS = ("debug", "info", "warning", "error")
PRICE_FALLBACKS = ("coinbase", "kraken")
_KEY_IN_URL = re.compile(r"[?&](x_cg_(?:demo|pro)_api_key)=", re.IGNORECASE)
_SPREADSHEET_ID = re.compile(r"^[A-Za-z0-9_-]{20,100}$")
_SPREADSHEET_URL = re.compile(r"/spreadsheets/d/([A-Za-z0-9_-]+)")
_NO_SECRET = Secret("", "default")


class ConfigError(Exception):
    """The configuration cannot be used; `problems` holds one line per fault."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class ListenError(Exception):
    """[http] listen names a valid address that cannot be bound (in use, not ours)."""


@dataclass(frozen=True)
class DaemonSettings:
    state_dir: Path = key(FilePath(), Path("/var/lib/buzzbotd"))
    lock_file: Path = key(FilePath(), Path("/run/buzzbotd/buzzbotd.lock"))
    log_level: str = key(Choice(LOG_LEVELS), "info")

    @property
    def database(self) -> Path:
        return self.state_dir / "buzzbotd.db"


@dataclass(frozen=True)
class PriceSettings:
    url: str = key(Url(), "https://api.coingecko.com/api/v3/simple/price"
                          "?ids=bitcoin&vs_currencies=usd&include_24hr_change=true")
    timeout_s: float = key(Seconds(0.1, 300), 10.0)
    # A CoinGecko demo or pro key, sent as a header only (or the credential price_api_key).
    api_key: Secret = key(SecretText(), _NO_SECRET)
    # The first is the default; the url's vs_currencies follows this list.
    currencies: tuple[str, ...] = key(Currencies(), ("usd",))
    fallbacks: tuple[str, ...] = key(Names(PRICE_FALLBACKS), PRICE_FALLBACKS)
    coinbase_url: str = key(Url(api_base=True), "https://api.exchange.coinbase.com")
    kraken_url: str = key(Url(api_base=True), "https://api.kraken.com")




@dataclass(frozen=True)
class XSettings(Zoned):
    # First, so that its problems are listed first, as they always were.
    # times, timezone, grace_s, template: the old spelling of [posts]' keys; after
    # load they hold [posts]' values whichever spelling the file used.
    template: str = key(Template(), DEFAULT_TEMPLATE)
    enabled: bool = key(Flag(), True)
    api_base: str = key(Url(api_base=True), "https://api.x.com")
    times: tuple[time, ...] = key(TimesOfDay(), DEFAULT_TIMES)
    timezone: str = key(Zone(), "UTC")
    grace_s: int = key(Seconds(GRACE_FLOOR_S, 86400, whole=True), 600)
    consumer_key: Secret = key(SecretText(), _NO_SECRET)
    consumer_secret: Secret = key(SecretText(), _NO_SECRET)
    access_token: Secret = key(SecretText(), _NO_SECRET)
    access_token_secret: Secret = key(SecretText(), _NO_SECRET)
    # X's pay-per-use prices (docs.x.com/x-api/getting-started/pricing, 2026-12):
    # the daemon's spend estimate; a budget of 0 sets no cap.
    monthly_budget_usd: float = key(Usd(100_000), 0.0)
    price_post_usd: float = key(Usd(100), 0.015)
    price_post_with_url_usd: float = key(Usd(100), 0.20)
    price_read_usd: float = key(Usd(100), 0.001)        # per post read


@dataclass(frozen=True)
class TelegramSettings:
    enabled: bool = key(Flag(), True)
    api_base: str = key(Url(api_base=True), "https://api.telegram.org")
    token: Secret = key(SecretText(), _NO_SECRET)
    admin_ids: frozenset[int] = key(UserIds(), frozenset())
    default_timezone: str = key(Zone(), "UTC")
    reminder_grace_s: int = key(Seconds(GRACE_FLOOR_S, 86400, whole=True), 3600)
    alert_admins: bool = key(Flag(), True)
    # How often /alert levels are checked against the shared price client.
    alert_check_s: int = key(Seconds(15, 3600, whole=True), 60)
    channel: str = key(Channel(), "")      # "@name" or a numeric id: each slot posted there too


@dataclass(frozen=True)
class HttpSettings:
    listen: str = key(Listen(), "127.0.0.1:8780")     # "" turns the server off

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) to bind, or None when off; the value is validated already."""
        if not self.listen:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


@dataclass(frozen=True)
class SheetsSettings:
    enabled: bool = key(Flag(), False)
    spreadsheet_id: str = key(Text(strip=True), "")
    api_base: str = key(Url(api_base=True), "https://sheets.googleapis.com")
    # Each sync is a handful of requests; Google allows 60 a minute per user.
    interval_s: int = key(Seconds(30, 86400, whole=True), 300)
    service_account_file: str = key(Text(strip=True), "")
    # The key itself (JSON text), read and checked at load time from
    # $CREDENTIALS_DIRECTORY/sheets_service_account or service_account_file.
    # Not a config key: the TOML names the file.
    service_account: Secret = _NO_SECRET


@dataclass(frozen=True)
class DatabaseSettings:
    # "" = SQLite at state_dir/buzzbotd.db; else postgresql://user@host:port/dbname.
    # Kept without its password, which is in `password` (never logged); shown
    # only masked (an sslpassword or passfile parameter stays in it for libpq).
    url: str = key(PostgresUrl(), "")
    password: Secret = _NO_SECRET

    def describe(self, sqlite_path: Path) -> str:
        return masked(self.url) if self.url else str(sqlite_path)


@dataclass(frozen=True)
class Settings:
    path: Path
    daemon: DaemonSettings
    price: PriceSettings
    x: XSettings
    telegram: TelegramSettings
    sheets: SheetsSettings = SheetsSettings()
    http: HttpSettings = HttpSettings()
    database: DatabaseSettings = DatabaseSettings()
    posts: PostsSettings = PostsSettings()
    bluesky: BlueskySettings = BlueskySettings()
    mastodon: MastodonSettings = MastodonSettings()
    notes: tuple[str, ...] = ()      # what check-config says once (an old spelling, …)

    def template_of(self, network: str) -> str:
        """The template a network's posts are rendered from."""
        own = {"bluesky": self.bluesky.template, "mastodon": self.mastodon.template}
        return own.get(network) or self.posts.template

    def networks(self) -> list[str]:
        """The networks each slot is posted to, in a fixed order."""
        on = {"x": self.x.enabled, "bluesky": self.bluesky.enabled,
              "mastodon": self.mastodon.enabled,
              "channel": self.telegram.enabled and bool(self.telegram.channel)}
        return [name for name, enabled in on.items() if enabled]

    def secrets(self) -> list[str]:
        """Every non-empty secret value, so that logging can mask them."""
        values = [self.price.api_key, self.telegram.token, self.x.consumer_key,
                  self.x.consumer_secret, self.x.access_token, self.x.access_token_secret,
                  self.database.password, self.bluesky.app_password,
                  self.mastodon.access_token]
        return ([s.reveal() for s in values if s]
                + credentials.sheets_private_key(self.sheets.service_account))


SECTIONS: dict[str, type] = {
    "daemon": DaemonSettings,
    "price": PriceSettings,
    "posts": PostsSettings,
    "x": XSettings,
    "bluesky": BlueskySettings,
    "mastodon": MastodonSettings,
    "telegram": TelegramSettings,
    "sheets": SheetsSettings,
    "http": HttpSettings,
    "database": DatabaseSettings,
}


def default_path() -> Path:
    return Path(os.environ.get("BUZZBOTD_CONFIG") or DEFAULT_PATH)


def load(path: Path | str | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Reads and validates the config file; raises ConfigError listing every problem."""
    path = Path(path) if path is not None else default_path()
    environ = dict(os.environ) if environ is None else environ
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file (give another with --config PATH "
                           "or BUZZBOTD_CONFIG)"]) from None
    except OSError as e:
        raise ConfigError([f"{path}: cannot read: {e.strerror}"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{path}: not valid TOML: {e}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not valid TOML: the file is not UTF-8 text"]) from None
    check = Check(path, environ)
    settings = _read(document, check)
    if check.problems:
        raise ConfigError(check.problems)
    return settings


def _read(document: dict[str, Any], check: Check) -> Settings:
    """Every section through the one loop; after a section, the checks that span
    its keys; after all, where the secrets come from."""
    for name in document:
        if name not in SECTIONS:
            check.problem(name, "unknown section" + did_you_mean(name, SECTIONS)
                          + f"; the sections are {', '.join(f'[{s}]' for s in SECTIONS)}")
    after = {"price": _price, "sheets": _sheets, "database": _database}
    sections = {}
    for name, cls in SECTIONS.items():
        sections[name] = read_section(cls, name, document.get(name, {}), check)
        if name in after:
            sections[name] = after[name](sections[name], check)
    found = credentials.from_directory(check)
    sections["price"] = dataclasses.replace(sections["price"], **found["price"])
    sections["x"] = dataclasses.replace(sections["x"], **found["x"])
    for name in ("telegram", "bluesky", "mastodon"):
        sections[name] = dataclasses.replace(sections[name], **found[name])
    sections["posts"], notes = schedule(document, sections["posts"], sections["x"], check)
    sections["x"] = dataclasses.replace(sections["x"], **{
        name: getattr(sections["posts"], name) for name in SCHEDULE_KEYS})
    credentials.check_required(sections, check)
    _template_currencies(sections["posts"].template, sections["price"].currencies,
                         "posts.template", check)
    for network in ("bluesky", "mastodon"):
        own = sections[network].template
        if own:
            network_template(network, own, check)
            _template_currencies(own, sections["price"].currencies, f"{network}.template",
                                 check)
    return Settings(path=check.path, notes=tuple(notes), **sections)


def _price(price: PriceSettings, check: Check) -> PriceSettings:
    """A key belongs in price.api_key (a header), never in the URL (logs keep URLs)."""
    if found := _KEY_IN_URL.search(price.url):
        check.problem("price.url", f"holds an API key ({found.group(1)}=…); expected the URL "
                      "without it and the key in price.api_key or the credential "
                      "price_api_key, which is sent as a header (value not shown)")
    return price


def _template_currencies(template: str, currencies: tuple[str, ...], name: str,
                         check: Check) -> None:
    """Each {price_<code>} of a template names one of price.currencies."""
    for code in template_currencies(template):
        if code not in currencies:
            check.problem(name, f"{{price_{code}}} needs \"{code}\" in price.currencies "
                          f"(now {list(currencies)})", template)


def _sheets(sheets: SheetsSettings, check: Check) -> SheetsSettings:
    """Enabled, the sheet needs its id and a key that works."""
    if not sheets.enabled:
        return sheets
    if not _SPREADSHEET_ID.match(sheets.spreadsheet_id):
        found = _SPREADSHEET_URL.search(sheets.spreadsheet_id)
        hint = (f'; that looks like the address of the sheet: its id is "{found.group(1)}"'
                if found else "")
        check.problem("sheets.spreadsheet_id", "expected the spreadsheet's id, the part of "
                      "its address between /d/ and /edit (letters, digits, - and _, at least "
                      "20)" + hint, sheets.spreadsheet_id)
    return dataclasses.replace(sheets, service_account=credentials.sheets_key(sheets, check))


def _database(database: DatabaseSettings, check: Check) -> DatabaseSettings:
    """PostgreSQL: the password out of the URL, or from a credential file."""
    if not database.url:
        return database
    url, password = credentials.database_password(database.url, check)
    return DatabaseSettings(url=url, password=password)

