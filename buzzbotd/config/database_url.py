"""A PostgreSQL database URL's secrets: its password taken out (the one before
the host, or a ?password= parameter), and every secret shown masked in logs,
messages and `status` (the password, and the sslpassword and passfile
parameters, which libpq still needs in the URL)."""

from __future__ import annotations

from urllib.parse import quote, unquote, urlsplit

# Query parameters whose value is a secret, or says where one is (libpq's names).
SECRET_PARAMETERS = ("password", "sslpassword", "passfile")
MASK = "***"


def is_postgres_url(url: str) -> bool:
    return urlsplit(url).scheme in ("postgresql", "postgres")


def masked(url: str) -> str:
    """The URL with every secret replaced by ***, for logs and messages (even a
    malformed one)."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        userinfo, host = parts.netloc.rsplit("@", 1)
        if ":" in userinfo:
            parts = parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:{MASK}@{host}")
    if parts.query:
        parts = parts._replace(query="&".join(
            f"{field.partition('=')[0]}={MASK}" if _is_secret(field) else field
            for field in parts.query.split("&")))
    return parts.geturl()


def without_password(url: str) -> tuple[str, str | None]:
    """(the URL without its password, the password it had or None). A
    ?password= parameter wins over one before the host, as in libpq. The rest
    of the URL is kept as written."""
    parts = urlsplit(url)
    password = None
    if parts.password is not None:
        password = unquote(parts.password)
        netloc = quote(unquote(parts.username or ""), safe="") + f"@{parts.hostname or ''}"
        if parts.port:
            netloc += f":{parts.port}"
        parts = parts._replace(netloc=netloc)
    fields = parts.query.split("&") if parts.query else []
    if given := [field for field in fields if _is_secret(field, ("password",))]:
        password = unquote(given[-1].partition("=")[2])
        parts = parts._replace(query="&".join(f for f in fields if f not in given))
    return (parts.geturl() if password is not None else url), password


def _is_secret(field: str, names: tuple[str, ...] = SECRET_PARAMETERS) -> bool:
    return unquote(field.partition("=")[0]).strip() in names
