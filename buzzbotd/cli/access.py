"""Who may use what: the state, database and lock paths a command needs,
checked before any work, and the one line that says what is in the way."""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

from buzzbotd import config


def check(command: str, settings: config.Settings) -> None:
    """Finds, before any work, a directory or file this user may not use.

    SQLite reports an unwritable directory as "unable to open database file",
    which reads like a damaged database; an operator who ran the command as
    the wrong user needs the path and the user instead (raised as
    PermissionError, reported by cli.main()).
    """
    d = settings.daemon
    if command == "run" and settings.database.url:
        needs = [(d.state_dir, os.W_OK | os.X_OK), (d.lock_file.parent, os.W_OK | os.X_OK)]
    elif command in ("status", "export") and settings.database.url:
        return
    elif command == "run":
        needs = [(d.state_dir, os.W_OK | os.X_OK), (d.database, os.R_OK | os.W_OK),
                 (d.lock_file.parent, os.W_OK | os.X_OK)]
    elif command == "status":
        needs = [(d.state_dir, os.X_OK), (d.database, os.R_OK)]
    else:
        return
    for path, mode in needs:
        if not os.access(_existing(path), mode):
            raise PermissionError(13, "Permission denied", str(path))


def _existing(path: str | os.PathLike[str]) -> Path:
    """The path itself if it exists, else its nearest existing parent (the
    one a mkdir or create would need to write)."""
    p = Path(path)
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def problem(e: PermissionError, command: str) -> str:
    """One line: the path, who is asking, who owns what is in the way, and
    what to do."""
    user = _user_name(os.geteuid())
    path = e.filename or "?"
    where = _existing(path)
    try:
        st = os.stat(where)
        owner = (f"{where} is owned by {_user_name(st.st_uid)}:{_group_name(st.st_gid)}, "
                 f"mode {st.st_mode & 0o7777:04o}")
    except OSError:
        owner = f"{where} cannot be inspected"
    what = "permission denied" if str(where) == str(path) else "cannot be created"
    return (f"{path}: {what} for user {user} ({owner}); run 'buzzbotd {command}' as "
            f"root or as the user that owns it (the package's: "
            f"sudo -u buzzbotd buzzbotd {command})")


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
