"""Who may run the daemon on a state directory.

`sudo buzzbotd run` once, on a host where the service runs as user
buzzbotd, would leave a database, WAL and backups owned by root that the
service then cannot write. Root is therefore refused where the state
belongs to someone else; the message says how to run it instead.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from buzzbotd.config import DEFAULT_PATH, Settings


class WrongUser(Exception):
    """The daemon was started as root on another user's state."""


def check_run_as(settings: Settings, euid: int | None = None) -> None:
    """Raises WrongUser if this process is root and the state dir or the
    database belongs to another user."""
    euid = os.geteuid() if euid is None else euid
    if euid != 0:
        return
    for path in (settings.daemon.state_dir, settings.daemon.database):
        try:
            owner = path.stat().st_uid
        except FileNotFoundError:
            continue
        if owner != euid:
            raise WrongUser(_message(path, owner, settings.path))


def _message(path: Path, uid: int, config: Path) -> str:
    try:
        name = pwd.getpwuid(uid).pw_name
        user, sudo_user = f"user {name} (uid {uid})", name
    except KeyError:
        user, sudo_user = f"uid {uid}", f"'#{uid}'"
    option = "" if config == DEFAULT_PATH else f" --config {config}"
    return (f"{path} belongs to {user}, but this is root: files a run as root creates there "
            f"would belong to root and the service could no longer write them; run it as "
            f"its owner: sudo -u {sudo_user} buzzbotd run{option}, or systemctl start buzzbotd")
