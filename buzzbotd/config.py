"""The configuration file: TOML validated into an immutable `Settings`.

Every problem is reported as `file: key = value: expected …` and all problems
are collected before failing, so an operator fixes the file in one pass.
Secrets are wrapped in `Secret`, which never prints its value.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import math
import os
import re
import tomllib
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from buzzbotd.timeinput import closest_zone, time_of_day, zone_name
from buzzbotd.tweet import template_problem

DEFAULT_PATH = Path("/etc/buzzbotd/buzzbotd.toml")
LOG_LEVELS = ("debug", "info", "warning", "error")
# The credential files systemd's LoadCredential= puts in $CREDENTIALS_DIRECTORY,
# and the config key each one stands in for.
CREDENTIALS = {
    "telegram_token": ("telegram", "token"),
    "x_consumer_key": ("x", "consumer_key"),
    "x_consumer_secret": ("x", "consumer_secret"),
    "x_access_token": ("x", "access_token"),
    "x_access_token_secret": ("x", "access_token_secret"),
}
# The credential file that stands in for sheets.service_account_file (its
# contents are the key itself, not a path).
SHEETS_CREDENTIAL = "sheets_service_account"
_SPREADSHEET_ID = re.compile(r"^[A-Za-z0-9_-]{20,100}$")
_SPREADSHEET_URL = re.compile(r"/spreadsheets/d/([A-Za-z0-9_-]+)")
_TELEGRAM_TOKEN = re.compile(r"^[0-9]+:[A-Za-z0-9_-]{1,200}$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")


class ConfigError(Exception):
    """The configuration cannot be used; `problems` holds one line per fault."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class ListenError(Exception):
    """[http] listen names a valid address that cannot be bound (in use, not ours)."""


class Secret:
    """A credential. Its value is only reachable through `reveal()`."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self.source = source  # where it came from, safe to print

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return f"<secret from {self.source}>" if self._value else "<empty secret>"

    __str__ = __repr__


@dataclass(frozen=True)
class DaemonSettings:
    state_dir: Path = Path("/var/lib/buzzbotd")
    lock_file: Path = Path("/run/buzzbotd/buzzbotd.lock")
    log_level: str = "info"

    @property
    def database(self) -> Path:
        return self.state_dir / "buzzbotd.db"


@dataclass(frozen=True)
class PriceSettings:
    url: str = (
        "https://api.coingecko.com/api/v3/simple/price"
        "?ids=bitcoin&vs_currencies=usd&include_24hr_change=true"
    )
    timeout_s: float = 10.0


@dataclass(frozen=True)
class XSettings:
    enabled: bool = True
    api_base: str = "https://api.x.com"
    times: tuple[time, ...] = (time(8), time(12), time(16), time(20))
    timezone: str = "UTC"
    grace_s: int = 600
    template: str = "Bitcoin is at ${price:,.2f} ({change_24h:+.2f}% in 24h) #BTC"
    consumer_key: Secret = Secret("", "default")
    consumer_secret: Secret = Secret("", "default")
    access_token: Secret = Secret("", "default")
    access_token_secret: Secret = Secret("", "default")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class TelegramSettings:
    enabled: bool = True
    api_base: str = "https://api.telegram.org"
    token: Secret = Secret("", "default")
    admin_ids: frozenset[int] = frozenset()
    default_timezone: str = "UTC"
    reminder_grace_s: int = 3600
    alert_admins: bool = True


@dataclass(frozen=True)
class HttpSettings:
    listen: str = "127.0.0.1:8780"     # "" turns the server off

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) to bind, or None when off; the value is validated already."""
        if not self.listen:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


@dataclass(frozen=True)
class SheetsSettings:
    enabled: bool = False
    spreadsheet_id: str = ""
    api_base: str = "https://sheets.googleapis.com"
    interval_s: int = 300
    service_account_file: str = ""
    # The key itself (JSON text), read and checked at load time from
    # $CREDENTIALS_DIRECTORY/sheets_service_account or service_account_file.
    # Not a config key: the TOML names the file.
    service_account: Secret = dataclasses.field(default=Secret("", "default"),
                                                metadata={"config": False})


@dataclass(frozen=True)
class DatabaseSettings:
    # "" = SQLite at state_dir/buzzbotd.db; else postgresql://user@host:port/dbname.
    # Kept without its password, which is in `password` (never logged).
    url: str = ""
    password: Secret = dataclasses.field(default=Secret("", "default"),
                                         metadata={"config": False})

    def describe(self, sqlite_path: Path) -> str:
        return self.url or str(sqlite_path)


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

    def secrets(self) -> list[str]:
        """Every non-empty secret value, so that logging can mask them."""
        values = [self.telegram.token, self.x.consumer_key, self.x.consumer_secret,
                  self.x.access_token, self.x.access_token_secret, self.database.password]
        return [s.reveal() for s in values if s] + sheets_private_key(self.sheets)


SECTIONS: dict[str, type] = {
    "daemon": DaemonSettings,
    "price": PriceSettings,
    "x": XSettings,
    "telegram": TelegramSettings,
    "sheets": SheetsSettings,
    "http": HttpSettings,
    "database": DatabaseSettings,
}
DATABASE_CREDENTIAL = "database_password"


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
    return _Validator(path, environ).settings(document)


class _Validator:
    """Turns the parsed TOML document into Settings, collecting problems."""

    def __init__(self, path: Path, environ: dict[str, str]) -> None:
        self.path = path
        self.environ = environ
        self.problems: list[str] = []

    def problem(self, key: str, message: str, value: Any = dataclasses.MISSING) -> None:
        shown = "" if value is dataclasses.MISSING else f" = {_show(value)}"
        self.problems.append(f"{self.path}: {key}{shown}: {message}")

    def settings(self, document: dict[str, Any]) -> Settings:
        for name in document:
            if name not in SECTIONS:
                self.problem(name, "unknown section" + _did_you_mean(name, SECTIONS)
                             + f"; the sections are {', '.join(f'[{s}]' for s in SECTIONS)}")
        sections = {}
        for name, cls in SECTIONS.items():
            table = document.get(name, {})
            if not isinstance(table, dict):
                self.problem(name, f"expected a [{name}] table", table)
                table = {}
            known = {f.name for f in dataclasses.fields(cls) if f.metadata.get("config", True)}
            for key in table:
                if key not in known:
                    self.problem(f"{name}.{key}", "unknown key" + _did_you_mean(key, known))
            sections[name] = getattr(self, f"_{name}")(table)
        credentials = self._credentials()
        sections["x"] = dataclasses.replace(sections["x"], **credentials["x"])
        sections["telegram"] = dataclasses.replace(sections["telegram"], **credentials["telegram"])
        self._required_secrets(sections["x"], sections["telegram"])
        if self.problems:
            raise ConfigError(self.problems)
        return Settings(path=self.path, **sections)

    # -- sections --------------------------------------------------------

    def _daemon(self, t: dict[str, Any]) -> DaemonSettings:
        d = DaemonSettings()
        return DaemonSettings(
            state_dir=self._path(t, "daemon.state_dir", d.state_dir),
            lock_file=self._path(t, "daemon.lock_file", d.lock_file),
            log_level=self._choice(t, "daemon.log_level", d.log_level, LOG_LEVELS),
        )

    def _price(self, t: dict[str, Any]) -> PriceSettings:
        d = PriceSettings()
        return PriceSettings(
            url=self._url(t, "price.url", d.url),
            timeout_s=self._number(t, "price.timeout_s", d.timeout_s, 0.1, 300),
        )

    def _x(self, t: dict[str, Any]) -> XSettings:
        d = XSettings()
        template = self._string(t, "x.template", d.template)
        self._check_template(template)
        return XSettings(
            enabled=self._bool(t, "x.enabled", d.enabled),
            api_base=self._url(t, "x.api_base", d.api_base),
            times=self._times(t, "x.times", d.times),
            timezone=self._zone(t, "x.timezone", d.timezone),
            # 0 would skip every slot: the job runs a moment after its instant.
            grace_s=int(self._number(t, "x.grace_s", d.grace_s, 1, 86400, integer=True)),
            template=template,
            consumer_key=self._secret(t, "x.consumer_key"),
            consumer_secret=self._secret(t, "x.consumer_secret"),
            access_token=self._secret(t, "x.access_token"),
            access_token_secret=self._secret(t, "x.access_token_secret"),
        )

    def _telegram(self, t: dict[str, Any]) -> TelegramSettings:
        d = TelegramSettings()
        return TelegramSettings(
            enabled=self._bool(t, "telegram.enabled", d.enabled),
            api_base=self._url(t, "telegram.api_base", d.api_base),
            token=self._secret(t, "telegram.token"),
            admin_ids=self._admin_ids(t, "telegram.admin_ids"),
            default_timezone=self._zone(t, "telegram.default_timezone", d.default_timezone),
            reminder_grace_s=int(self._number(t, "telegram.reminder_grace_s",
                                              d.reminder_grace_s, 1, 86400, integer=True)),
            alert_admins=self._bool(t, "telegram.alert_admins", d.alert_admins),
        )

    def _sheets(self, t: dict[str, Any]) -> SheetsSettings:
        d = SheetsSettings()
        sheets = SheetsSettings(
            enabled=self._bool(t, "sheets.enabled", d.enabled),
            spreadsheet_id=self._string(t, "sheets.spreadsheet_id", d.spreadsheet_id).strip(),
            api_base=self._url(t, "sheets.api_base", d.api_base),
            # Each sync is a handful of requests; Google allows 60 a minute per user.
            interval_s=int(self._number(t, "sheets.interval_s", d.interval_s, 30, 86400,
                                        integer=True)),
            service_account_file=self._string(t, "sheets.service_account_file",
                                              d.service_account_file).strip(),
        )
        if not sheets.enabled:
            return sheets
        self._check_spreadsheet_id(sheets.spreadsheet_id)
        return dataclasses.replace(sheets, service_account=self._sheets_key(sheets))

    def _database(self, t: dict[str, Any]) -> DatabaseSettings:
        key = "database.url"
        value = self._get(t, key, "")
        expected = ('expected "" (SQLite in daemon.state_dir) or a PostgreSQL URL, '
                    'e.g. "postgresql://buzzbotd@db.example:5432/buzzbotd"')
        if not isinstance(value, str):
            self.problem(key, expected, "(not shown)")
            return DatabaseSettings()
        if not value.strip():
            return DatabaseSettings()
        from buzzbotd.db.postgres import masked, without_password
        try:
            parts = urlsplit(value.strip())
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            self.problem(key, expected + " (the port is not a number from 1 to 65535)",
                         masked(value))
            return DatabaseSettings()
        if (parts.scheme not in ("postgresql", "postgres") or not parts.hostname
                or not parts.username or parts.path.strip("/") == "" or " " in value):
            self.problem(key, expected + "; it needs a user, a host and a database name",
                         masked(value))
            return DatabaseSettings()
        url, in_url = without_password(value.strip())
        password = Secret(in_url, f"{self.path} database.url") if in_url else Secret("", "none")
        directory = self.environ.get("CREDENTIALS_DIRECTORY")
        file = os.path.join(directory, DATABASE_CREDENTIAL) if directory else None
        if file and os.path.exists(file):
            try:
                with open(file, encoding="utf-8") as f:
                    password = Secret(f.read().strip(), file)
            except (OSError, UnicodeDecodeError) as e:
                reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
                self.problem(key, f"cannot read the credential file {file}: {reason}")
        return DatabaseSettings(url=url, password=password)

    def _check_spreadsheet_id(self, value: str) -> None:
        key = "sheets.spreadsheet_id"
        if _SPREADSHEET_ID.match(value):
            return
        found = _SPREADSHEET_URL.search(value)
        hint = (f'; that looks like the address of the sheet: its id is "{found.group(1)}"'
                if found else "")
        self.problem(key, "expected the spreadsheet's id, the part of its address between "
                     "/d/ and /edit (letters, digits, - and _, at least 20)" + hint, value)

    def _sheets_key(self, sheets: SheetsSettings) -> Secret:
        """The service account key, checked for what google-auth needs. Its
        contents never appear in a message: only the file and the field names."""
        key = "sheets.service_account_file"
        directory = self.environ.get("CREDENTIALS_DIRECTORY")
        credential = os.path.join(directory, SHEETS_CREDENTIAL) if directory else None
        if credential and os.path.exists(credential):
            file, where = credential, f"{key} (from $CREDENTIALS_DIRECTORY/{SHEETS_CREDENTIAL})"
        elif sheets.service_account_file:
            file = sheets.service_account_file
            if not os.path.isabs(file):
                file = str((self.path.parent / file).resolve())
            where = f"{key} = {_show(sheets.service_account_file)}"
        else:
            self.problem(key, "is empty; expected the path of a Google service account key "
                         f"(JSON), or the credential $CREDENTIALS_DIRECTORY/{SHEETS_CREDENTIAL}, "
                         "or set sheets.enabled = false")
            return Secret("", "default")

        def problem(message: str) -> None:
            self.problems.append(f"{self.path}: {where}: {message}")

        try:
            with open(file, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            problem(f"cannot read {file}: {e.strerror}")
            return Secret("", "default")
        except UnicodeDecodeError:
            problem(f"{file} is not UTF-8 text; expected the JSON key file from Google")
            return Secret("", "default")
        try:
            info = json.loads(text)
        except json.JSONDecodeError as e:
            # e.msg and the position only: the text itself holds the private key.
            problem(f"{file} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); "
                    "expected the service account key file Google gave you, unchanged")
            return Secret("", "default")
        if not isinstance(info, dict):
            problem(f"{file}: expected a JSON object (a service account key)")
            return Secret("", "default")
        missing = []
        for field in ("client_email", "private_key", "token_uri"):
            value = info.get(field)
            if not isinstance(value, str) or not value.strip():
                missing.append(field)
        if missing:
            problem(f"{file} has no {', '.join(missing)}; expected a service account key "
                    "(JSON with client_email, private_key and token_uri)")
            return Secret("", "default")
        if "PRIVATE KEY-----" not in info["private_key"]:
            problem(f"{file}: private_key is not a PEM private key (value not shown)")
            return Secret("", "default")
        token = urlsplit(info["token_uri"])
        if token.scheme not in ("http", "https") or not token.hostname:
            problem(f"{file}: token_uri = {_show(info['token_uri'])}: expected an http:// or "
                    "https:// URL, e.g. \"https://oauth2.googleapis.com/token\"")
            return Secret("", "default")
        return Secret(text, file)

    def _http(self, t: dict[str, Any]) -> HttpSettings:
        key = "http.listen"
        value = self._get(t, key, HttpSettings.listen)
        expected = ('expected "host:port" with a port from 1 to 65535, e.g. "127.0.0.1:8780" '
                    '(or "0.0.0.0:8780" to serve the LAN, "[::1]:8780" for IPv6), '
                    'or "" to turn the server off')
        if not isinstance(value, str) or not _listen_ok(value):
            self.problem(key, expected, value)
            return HttpSettings()
        return HttpSettings(listen=value)

    # -- credentials -----------------------------------------------------

    def _credentials(self) -> dict[str, dict[str, Secret]]:
        found: dict[str, dict[str, Secret]] = {"x": {}, "telegram": {}}
        directory = self.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            return found
        key = "$CREDENTIALS_DIRECTORY"
        try:
            present = set(os.listdir(directory))
        except OSError as e:
            self.problem(key, f"cannot read the credentials directory: {e.strerror}", directory)
            return found
        for name, (section, field) in CREDENTIALS.items():
            if name not in present:
                continue
            file = os.path.join(directory, name)
            try:
                with open(file, encoding="utf-8") as f:
                    value = f.read().strip()
            except (OSError, UnicodeDecodeError) as e:
                reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
                self.problem(f"{section}.{field}", f"cannot read the credential file {file}: "
                             f"{reason}")
                continue
            found[section][field] = Secret(value, file)
        return found

    def _required_secrets(self, x: XSettings, telegram: TelegramSettings) -> None:
        where = "in the config or in $CREDENTIALS_DIRECTORY/{}"
        if telegram.enabled:
            if not telegram.token:
                self.problem("telegram.token", "is empty; expected the bot token from "
                             "@BotFather, " + where.format("telegram_token")
                             + ", or set telegram.enabled = false")
            elif not _TELEGRAM_TOKEN.match(telegram.token.reveal()):
                self.problem("telegram.token", f"({telegram.token}) does not look like a bot "
                             "token; expected digits, a colon and letters, "
                             "e.g. 123456:ABC-def (value not shown)")
        if x.enabled:
            for name, (_, field) in CREDENTIALS.items():
                if name.startswith("x_") and not getattr(x, field):
                    self.problem(f"x.{field}", "is empty; expected the X app's OAuth 1.0a "
                                 "credential, " + where.format(name)
                                 + ", or set x.enabled = false")

    # -- typed values ----------------------------------------------------

    def _get(self, t: dict[str, Any], key: str, default: Any) -> Any:
        return t.get(key.rsplit(".", 1)[1], default)

    def _bool(self, t: dict[str, Any], key: str, default: bool) -> bool:
        value = self._get(t, key, default)
        if not isinstance(value, bool):
            self.problem(key, "expected true or false", value)
            return default
        return value

    def _string(self, t: dict[str, Any], key: str, default: str) -> str:
        value = self._get(t, key, default)
        if not isinstance(value, str):
            self.problem(key, "expected a string in double quotes", value)
            return default
        return value

    def _secret(self, t: dict[str, Any], key: str) -> Secret:
        value = self._get(t, key, "")
        if not isinstance(value, str):
            self.problem(key, "expected a string in double quotes (value not shown)")
            return Secret("", "default")
        return Secret(value.strip(), f"{self.path} {key}")

    def _choice(self, t: dict[str, Any], key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self._get(t, key, default)
        if value not in choices:
            self.problem(key, "expected one of " + " | ".join(f'"{c}"' for c in choices), value)
            return default
        return value

    def _number(self, t: dict[str, Any], key: str, default: float, low: float, high: float,
                integer: bool = False) -> float:
        value = self._get(t, key, default)
        kind = "a whole number of seconds" if integer else "a number of seconds"
        ok_type = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_type):
            self.problem(key, f"expected {kind} from {low:g} to {high:g}", value)
            return default
        if not (math.isfinite(value) and low <= value <= high):
            self.problem(key, f"expected {kind} from {low:g} to {high:g}", value)
            return default
        return value

    def _path(self, t: dict[str, Any], key: str, default: Path) -> Path:
        value = self._get(t, key, str(default))
        if not isinstance(value, str) or not value.strip() or "\0" in value:
            self.problem(key, "expected a file system path in double quotes", value)
            return default
        path = Path(value).expanduser()
        # A relative path is taken relative to the config file, not to the
        # working directory, so the same file means the same thing everywhere.
        return path if path.is_absolute() else (self.path.parent / path).resolve()

    def _url(self, t: dict[str, Any], key: str, default: str) -> str:
        value = self._get(t, key, default)
        expected = 'expected an http:// or https:// URL, e.g. "https://api.x.com"'
        if not isinstance(value, str):
            self.problem(key, expected, value)
            return default
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            self.problem(key, expected, value)
            return default
        if parts.scheme not in ("http", "https") or not parts.hostname or " " in value:
            self.problem(key, expected, value)
            return default
        return value.rstrip("/") if key.endswith("api_base") else value

    def _zone(self, t: dict[str, Any], key: str, default: str) -> str:
        value = self._get(t, key, default)
        expected = 'expected an IANA time zone name, e.g. "UTC", "Europe/Berlin"'
        if not isinstance(value, str):
            self.problem(key, expected, value)
            return default
        if zone_name(value, any_case=False) is None:
            close = closest_zone(value, any_case=False, cutoff=0.6)
            self.problem(key, expected + (f'; did you mean "{close}"?' if close else ""), value)
            return default
        return value

    def _times(self, t: dict[str, Any], key: str, default: tuple[time, ...]) -> tuple[time, ...]:
        value = self._get(t, key, None)
        if value is None:
            return default
        expected = 'expected a list of times of day "HH:MM" or "HH:MM:SS" (24-hour), ' \
                   'e.g. ["08:00", "20:00"]'
        if not isinstance(value, list) or not value:
            self.problem(key, expected, value)
            return default
        times = []
        for i, item in enumerate(value):
            parsed = (time_of_day(item.strip(), one_digit_hour=False, seconds=True)
                      if isinstance(item, str) else None)
            if parsed is None:
                self.problem(f"{key}[{i}]", 'expected a time of day "HH:MM" or "HH:MM:SS" '
                             '(24-hour), e.g. "08:00"', item)
            elif parsed in times:
                self.problem(f"{key}[{i}]", "appears twice; expected each time once", item)
            else:
                times.append(parsed)
        return tuple(sorted(times))

    def _admin_ids(self, t: dict[str, Any], key: str) -> frozenset[int]:
        value = self._get(t, key, [])
        expected = "expected a list of numeric Telegram user ids, e.g. [123456789]"
        if not isinstance(value, list):
            self.problem(key, expected, value)
            return frozenset()
        ids = set()
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, int) or item <= 0:
                self.problem(f"{key}[{i}]", "expected a positive numeric Telegram user id "
                             "(ask @userinfobot), without quotes", item)
            else:
                ids.add(item)
        return frozenset(ids)

    def _check_template(self, template: str) -> None:
        if problem := template_problem(template):
            self.problem("x.template", problem, template)


def sheets_private_key(sheets: SheetsSettings) -> list[str]:
    """The key's private_key and each line of it, for log masking."""
    if not sheets.service_account:
        return []
    key = json.loads(sheets.service_account.reveal())["private_key"]
    return [key] + [line for line in key.splitlines() if len(line) >= 16]
def _listen_ok(value: str) -> bool:
    if value == "":
        return True
    host, colon, port = value.rpartition(":")
    if not colon or not port.isdigit() or not 1 <= int(port) <= 65535:
        return False
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    return bool(_HOSTNAME.match(host))


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""


def _show(value: Any) -> str:
    """A value as the operator wrote it in TOML, shortened."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = '"' + value.replace('"', '\\"') + '"'
    else:
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
