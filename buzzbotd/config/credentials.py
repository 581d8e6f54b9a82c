"""Where the config's secrets come from: the file itself, or the credential files
systemd's LoadCredential= puts in $CREDENTIALS_DIRECTORY (which win); the
Sheets key file checked for what google-auth needs. No message ever holds a
secret: only the file and the key it stands in for.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any
from urllib.parse import urlsplit

from buzzbotd.config.database_url import without_password
from buzzbotd.config.keys import Check, Secret, show

# The credential files in $CREDENTIALS_DIRECTORY, and the config key each one
# stands in for.
CREDENTIALS = {
    "price_api_key": ("price", "api_key"),
    "telegram_token": ("telegram", "token"),
    "x_consumer_key": ("x", "consumer_key"),
    "x_consumer_secret": ("x", "consumer_secret"),
    "x_access_token": ("x", "access_token"),
    "x_access_token_secret": ("x", "access_token_secret"),
    "bluesky_app_password": ("bluesky", "app_password"),
    "mastodon_access_token": ("mastodon", "access_token"),
}
# The credential file that stands in for sheets.service_account_file (its
# contents are the key itself, not a path).
SHEETS_CREDENTIAL = "sheets_service_account"
DATABASE_CREDENTIAL = "database_password"
_TELEGRAM_TOKEN = re.compile(r"^[0-9]+:[A-Za-z0-9_-]{1,200}$")


def from_directory(check: Check) -> dict[str, dict[str, Secret]]:
    """The secrets found in $CREDENTIALS_DIRECTORY, by section and key."""
    found: dict[str, dict[str, Secret]] = {section: {} for section, _ in CREDENTIALS.values()}
    directory = check.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return found
    try:
        present = set(os.listdir(directory))
    except OSError as e:
        check.problem("$CREDENTIALS_DIRECTORY",
                      f"cannot read the credentials directory: {e.strerror}", directory)
        return found
    for name, (section, field) in CREDENTIALS.items():
        if name in present:
            file = os.path.join(directory, name)
            value = _read(file, f"{section}.{field}", check)
            if value is not None:
                found[section][field] = Secret(value, file)
    return found


def check_required(sections: dict[str, Any], check: Check) -> None:
    """The secrets (and names) an enabled part cannot run without."""
    x, telegram = sections["x"], sections["telegram"]
    where = "in the config or in $CREDENTIALS_DIRECTORY/{}"
    if telegram.enabled:
        if not telegram.token:
            check.problem("telegram.token", "is empty; expected the bot token from "
                          "@BotFather, " + where.format("telegram_token")
                          + ", or set telegram.enabled = false")
        elif not _TELEGRAM_TOKEN.match(telegram.token.reveal()):
            check.problem("telegram.token", f"({telegram.token}) does not look like a bot "
                          "token; expected digits, a colon and letters, "
                          "e.g. 123456:ABC-def (value not shown)")
    if x.enabled:
        for name, (_, field) in CREDENTIALS.items():
            if name.startswith("x_") and not getattr(x, field):
                check.problem(f"x.{field}", "is empty; expected the X app's OAuth 1.0a "
                              "credential, " + where.format(name)
                              + ", or set x.enabled = false")
    for section, field, expected, credential in _NETWORK_NEEDS:
        if sections[section].enabled and not getattr(sections[section], field):
            check.problem(f"{section}.{field}", f"is empty; expected {expected}, "
                          + (where.format(credential) + ", " if credential else "")
                          + f"or set {section}.enabled = false")


# What an enabled network needs: (section, key, what it is, its credential file).
_NETWORK_NEEDS = (
    ("bluesky", "handle", "the account's handle, e.g. buzzbot.bsky.social", None),
    ("bluesky", "app_password", "an app password (Settings → Privacy and security → App "
     "passwords)", "bluesky_app_password"),
    ("mastodon", "instance", 'the instance\'s address, e.g. "https://mastodon.social"', None),
    ("mastodon", "access_token", "an access token with the scopes write:statuses "
     "read:statuses", "mastodon_access_token"),
)


def database_password(url: str, check: Check) -> tuple[str, Secret]:
    """database.url without its password, and the password: the one in the URL, or
    $CREDENTIALS_DIRECTORY/database_password."""
    url, in_url = without_password(url)
    password = Secret(in_url, f"{check.path} database.url") if in_url else Secret("", "none")
    directory = check.environ.get("CREDENTIALS_DIRECTORY")
    file = os.path.join(directory, DATABASE_CREDENTIAL) if directory else None
    if file and os.path.exists(file):
        value = _read(file, "database.url", check)
        if value is not None:
            password = Secret(value, file)
    return url, password


def sheets_key(sheets: Any, check: Check) -> Secret:
    """The service account key, checked for what google-auth needs. Its
    contents never appear in a message: only the file and the field names."""
    key = "sheets.service_account_file"
    directory = check.environ.get("CREDENTIALS_DIRECTORY")
    credential = os.path.join(directory, SHEETS_CREDENTIAL) if directory else None
    if credential and os.path.exists(credential):
        file, where = credential, f"{key} (from $CREDENTIALS_DIRECTORY/{SHEETS_CREDENTIAL})"
    elif sheets.service_account_file:
        file = sheets.service_account_file
        if not os.path.isabs(file):
            file = str((check.path.parent / file).resolve())
        where = f"{key} = {show(sheets.service_account_file)}"
    else:
        check.problem(key, "is empty; expected the path of a Google service account key "
                      f"(JSON), or the credential $CREDENTIALS_DIRECTORY/{SHEETS_CREDENTIAL}, "
                      "or set sheets.enabled = false")
        return Secret("", "default")

    def problem(message: str) -> None:
        check.problems.append(f"{check.path}: {where}: {message}")

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
        problem(f"{file}: token_uri = {show(info['token_uri'])}: expected an http:// or "
                "https:// URL, e.g. \"https://oauth2.googleapis.com/token\"")
        return Secret("", "default")
    return Secret(text, file)


def sheets_private_key(service_account: Secret) -> list[str]:
    """The key's private_key and each line of it, for log masking."""
    if not service_account:
        return []
    key = json.loads(service_account.reveal())["private_key"]
    return [key] + [line for line in key.splitlines() if len(line) >= 16]


def _read(file: str, key: str, check: Check) -> str | None:
    try:
        with open(file, encoding="utf-8") as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        check.problem(key, f"cannot read the credential file {file}: {reason}")
        return None
