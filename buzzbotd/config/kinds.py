"""What a config value may be: one class per kind of value (true/false, seconds,
a URL, a zone, …) that turns what TOML gave into the value Settings holds, or
says what was expected (config/keys.py declares and reads the keys with them).
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from buzzbotd.config.database_url import masked
from buzzbotd.config.keys import Check, Invalid, Kind, Secret, did_you_mean
from buzzbotd.template import template_problem
from buzzbotd.timeinput import REFUSED_ZONES, closest_zone, legacy_zone, time_of_day, zone_name

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")


class Flag(Kind):
    def convert(self, value: Any, key: str, check: Check) -> bool:
        if not isinstance(value, bool):
            raise Invalid("expected true or false", value)
        return value


@dataclass(frozen=True)
class Text(Kind):
    strip: bool = False

    def convert(self, value: Any, key: str, check: Check) -> str:
        if not isinstance(value, str):
            raise Invalid("expected a string in double quotes", value)
        return value.strip() if self.strip else value


class SecretText(Kind):
    def absent(self, default: Any, key: str, check: Check) -> Secret:
        return self.convert("", key, check)

    def convert(self, value: Any, key: str, check: Check) -> Secret:
        if not isinstance(value, str):
            raise Invalid("expected a string in double quotes (value not shown)")
        return Secret(value.strip(), f"{check.path} {key}")


@dataclass(frozen=True)
class Choice(Kind):
    choices: tuple[str, ...]

    def convert(self, value: Any, key: str, check: Check) -> str:
        if value not in self.choices:
            raise Invalid("expected one of " + " | ".join(f'"{c}"' for c in self.choices),
                          value)
        return value


@dataclass(frozen=True)
class Seconds(Kind):
    low: float
    high: float
    whole: bool = False

    def convert(self, value: Any, key: str, check: Check) -> float:
        kind = "a whole number of seconds" if self.whole else "a number of seconds"
        ok_type = int if self.whole else (int, float)
        if (isinstance(value, bool) or not isinstance(value, ok_type)
                or not (math.isfinite(value) and self.low <= value <= self.high)):
            raise Invalid(f"expected {kind} from {self.low:g} to {self.high:g}", value)
        return int(value) if self.whole else value


@dataclass(frozen=True)
class Usd(Kind):
    """An amount of US dollars (X's prices, a monthly budget)."""
    high: float

    def convert(self, value: Any, key: str, check: Check) -> float:
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not (math.isfinite(value) and 0 <= value <= self.high)):
            raise Invalid(f"expected an amount in US dollars from 0 to {self.high:g}", value)
        return float(value)


class FilePath(Kind):
    def convert(self, value: Any, key: str, check: Check) -> Path:
        if not isinstance(value, str) or not value.strip() or "\0" in value:
            raise Invalid("expected a file system path in double quotes", value)
        path = Path(value).expanduser()
        # A relative path is taken relative to the config file, not to the
        # working directory, so the same file means the same thing everywhere.
        return path if path.is_absolute() else (check.path.parent / path).resolve()


@dataclass(frozen=True)
class Url(Kind):
    api_base: bool = False       # a root the clients append paths to: no trailing "/"
    empty: bool = False          # "" allowed (the section's check says when it is needed)

    def convert(self, value: Any, key: str, check: Check) -> str:
        expected = 'expected an http:// or https:// URL, e.g. "https://api.x.com"'
        if not isinstance(value, str):
            raise Invalid(expected, value)
        if self.empty and not value.strip():
            return ""
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise Invalid(expected, value) from None
        if parts.scheme not in ("http", "https") or not parts.hostname or " " in value:
            raise Invalid(expected, value)
        return value.rstrip("/") if self.api_base else value


class Zone(Kind):
    def convert(self, value: Any, key: str, check: Check) -> str:
        expected = 'expected an IANA time zone name, e.g. "UTC", "Europe/Berlin"'
        if not isinstance(value, str):
            raise Invalid(expected, value)
        current = legacy_zone(value)
        if current is not None:
            raise Invalid(f'a legacy name, which Debian 13 no longer installs by default '
                          f'(it is in tzdata-legacy); expected its current name "{current}"',
                          value)
        if value in REFUSED_ZONES:
            raise Invalid(expected + "; this name is not a place's zone", value)
        if zone_name(value, any_case=False) is None:
            close = closest_zone(value, any_case=False, cutoff=0.6)
            raise Invalid(expected + (f'; did you mean "{close}"?' if close else ""), value)
        return value


class TimesOfDay(Kind):
    def convert(self, value: Any, key: str, check: Check) -> tuple[time, ...]:
        if not isinstance(value, list) or not value:
            raise Invalid('expected a list of times of day "HH:MM" or "HH:MM:SS" (24-hour), '
                          'e.g. ["08:00", "20:00"]', value)
        times = []
        for i, item in enumerate(value):
            parsed = (time_of_day(item.strip(), one_digit_hour=False, seconds=True)
                      if isinstance(item, str) else None)
            if parsed is None:
                check.problem(f"{key}[{i}]", 'expected a time of day "HH:MM" or "HH:MM:SS" '
                              '(24-hour), e.g. "08:00"', item)
            elif parsed in times:
                check.problem(f"{key}[{i}]", "appears twice; expected each time once", item)
            else:
                times.append(parsed)
        return tuple(sorted(times))


class UserIds(Kind):
    def convert(self, value: Any, key: str, check: Check) -> frozenset[int]:
        if not isinstance(value, list):
            raise Invalid("expected a list of numeric Telegram user ids, e.g. [123456789]",
                          value)
        ids = set()
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, int) or item <= 0:
                check.problem(f"{key}[{i}]", "expected a positive numeric Telegram user id "
                              "(ask @userinfobot), without quotes", item)
            else:
                ids.add(item)
        return frozenset(ids)


class Currencies(Kind):
    """Fiat codes as CoinGecko's vs_currencies spells them ("usd", "eur"), each once."""

    def convert(self, value: Any, key: str, check: Check) -> tuple[str, ...]:
        expected = ('expected a list of currency codes, three letters each, the default '
                    'first, e.g. ["usd", "eur"]')
        if not isinstance(value, list) or not value:
            raise Invalid(expected, value)
        codes: list[str] = []
        for i, item in enumerate(value):
            code = item.strip().lower() if isinstance(item, str) else ""
            if not re.fullmatch(r"[a-z]{3}", code):
                check.problem(f"{key}[{i}]", expected, item)
            elif code in codes:
                check.problem(f"{key}[{i}]", "appears twice; expected each currency once", item)
            else:
                codes.append(code)
        return tuple(codes)


@dataclass(frozen=True)
class Names(Kind):
    """A list of names, each one of `choices`, each once, in the order given."""
    choices: tuple[str, ...]

    def convert(self, value: Any, key: str, check: Check) -> tuple[str, ...]:
        expected = ("expected a list of " + ", ".join(f'"{c}"' for c in self.choices)
                    + " (each at most once), or []")
        if not isinstance(value, list):
            raise Invalid(expected, value)
        names: list[str] = []
        for i, item in enumerate(value):
            if item not in self.choices or item in names:
                check.problem(f"{key}[{i}]", expected + did_you_mean(str(item), self.choices),
                              item)
            else:
                names.append(item)
        return tuple(names)


class Template(Kind):
    def convert(self, value: Any, key: str, check: Check) -> str:
        if not isinstance(value, str):
            raise Invalid("expected a string in double quotes", value)
        if problem := template_problem(value):
            raise Invalid(problem, value)
        return value


class Listen(Kind):
    def convert(self, value: Any, key: str, check: Check) -> str:
        if not isinstance(value, str) or not _listen_ok(value):
            raise Invalid('expected "host:port" with a port from 1 to 65535, '
                          'e.g. "127.0.0.1:8780" (or "0.0.0.0:8780" to serve the LAN, '
                          '"[::1]:8780" for IPv6), or "" to turn the server off', value)
        return value


class PostgresUrl(Kind):
    """"" or a PostgreSQL URL, which may hold a password: shown only masked."""

    def convert(self, value: Any, key: str, check: Check) -> str:
        expected = ('expected "" (SQLite in daemon.state_dir) or a PostgreSQL URL, '
                    'e.g. "postgresql://buzzbotd@db.example:5432/buzzbotd"')
        if not isinstance(value, str):
            raise Invalid(expected, "(not shown)")
        if not value.strip():
            return ""
        try:
            parts = urlsplit(value.strip())
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise Invalid(expected + " (the port is not a number from 1 to 65535)",
                          masked(value)) from None
        if (parts.scheme not in ("postgresql", "postgres") or not parts.hostname
                or not parts.username or parts.path.strip("/") == "" or " " in value):
            raise Invalid(expected + "; it needs a user, a host and a database name",
                          masked(value))
        return value.strip()


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
