"""Mastodon over its REST API, with httpx.

Every `POST /api/v1/statuses` carries `Idempotency-Key: <slot key>:mastodon`:
the server keeps a key an hour (app/services/post_status_service.rb: redis
setex 3600) and answers a repeat within it with the status the first one made.
An unknown outcome is settled by reading the account's own statuses (free):
Mastodon hands the text back only as HTML (in <p>, escaped, links and hashtags
made anchors), so it is compared after stripping the tags and unescaping. Not
found there and still within the key's hour (less KEY_MARGIN), the status is
posted again under the same key, which covers one the read could not see.

Mastodon.py (2.3.3) is not used: importing it alone costs +8.8 MiB of RSS over
a bare `import httpx` (+3.3 MiB over requests and httpx, which the daemon has
anyway), where this module, its import and one post, costs +1.7 MiB over httpx
making one GET.
"""

from __future__ import annotations

import html
import logging
import re
from datetime import datetime, timedelta
from typing import Any

import httpx

from buzzbotd.clock import Clock, utc_now
from buzzbotd.config.keys import Secret
from buzzbotd.posting import outcome
from buzzbotd.posting.outcome import CredentialsRefused, Failed, NotSent, Outcome, Posted, Unknown

log = logging.getLogger("buzzbotd.mastodon")
NETWORK = "mastodon"
KEY_MEMORY = timedelta(hours=1)
KEY_MARGIN = timedelta(minutes=5)    # a repeat this close to the hour's end may miss the key
LOOKBACK = timedelta(minutes=5)      # statuses read from before the first attempt (clock skew)
STATUSES_LIMIT = 40                  # the most one read returns
TOKEN_KEY = "mastodon.access_token"
TEMPLATE_KEY = "mastodon.template"
SCOPES = "write:statuses read:statuses"


class MastodonClient:
    network = NETWORK

    def __init__(self, instance: str, access_token: Secret, visibility: str = "public",
                 account_id: str | None = None, clock: Clock = utc_now,
                 timeout_s: float = outcome.REQUEST_TIMEOUT_S) -> None:
        self.instance = instance.rstrip("/")
        self.visibility = visibility
        self.clock = clock
        self._token = access_token
        self._account_id = account_id
        self._http = outcome.http_client(timeout_s)

    def close(self) -> None:
        self._http.close()

    def post(self, key: str, text: str) -> Outcome:
        try:
            answer = self._http.post(
                f"{self.instance}/api/v1/statuses",
                json={"status": text, "visibility": self.visibility},
                headers={**self._auth(), "Idempotency-Key": f"{key}:{NETWORK}"})
        except httpx.TransportError as e:
            return outcome.transport_outcome(e, NETWORK)
        if answer.status_code != 200:
            return self._refusal(answer, "posting")
        try:
            return _posted(answer.json(), "created")
        except (ValueError, KeyError, TypeError):
            return Posted("", "", "created (the answer's status was unreadable)")

    def settle(self, key: str, text: str, first_sent_at: datetime) -> Outcome:
        """Read first; within the key's hour, post again under the same key."""
        found = self.find(text, since=first_sent_at - LOOKBACK)
        if isinstance(found, Posted | Failed):
            return found
        if self.clock() - first_sent_at >= KEY_MEMORY - KEY_MARGIN:
            return found
        log.info("%s: %s; posting again under the same Idempotency-Key", key, found.reason)
        again = self.post(key, text)
        if isinstance(again, Posted):
            return _posted_again(again)
        return again

    def find(self, text: str, since: datetime) -> Outcome:
        """The account's own status of `text` made since `since`: Posted, or NotSent
        when it has none, Unknown when its statuses cannot be read."""
        try:
            account_id = self.account_id()
            answer = self._http.get(f"{self.instance}/api/v1/accounts/{account_id}/statuses",
                                    params={"limit": STATUSES_LIMIT, "exclude_reblogs": "true"},
                                    headers=self._auth())
        except CredentialsRefused as e:
            return e.outcome()
        except _Unreadable as e:
            return Unknown(str(e))
        except httpx.TransportError as e:
            return Unknown(f"cannot read the account's statuses: "
                           f"{outcome.transport_outcome(e, NETWORK).reason}")
        if answer.status_code != 200:
            refusal = self._refusal(answer, "reading the account's statuses")
            return refusal if isinstance(refusal, Failed) else Unknown(refusal.reason)
        wanted = _words(text)
        try:
            for status in answer.json():
                created = datetime.fromisoformat(status["created_at"])
                if created >= since and _words(plain_text(status["content"] or "")) == wanted:
                    return _posted(status, "found on the account's statuses")
        except (ValueError, KeyError, TypeError) as e:
            return Unknown(f"cannot read the account's statuses: {type(e).__name__}")
        return NotSent("not on the account's statuses: the earlier attempt did not post")

    def account_id(self) -> str:
        """The token's account (verify_credentials, asked once). Raises
        CredentialsRefused naming mastodon.access_token, _Unreadable otherwise."""
        if self._account_id is None:
            try:
                answer = self._http.get(f"{self.instance}/api/v1/accounts/verify_credentials",
                                        headers=self._auth())
            except httpx.TransportError as e:
                raise _Unreadable(f"cannot verify the token: {type(e).__name__}") from None
            if answer.status_code != 200:
                refusal = self._refusal(answer, "verifying the token")
                if isinstance(refusal, Failed) and refusal.config_key == TOKEN_KEY:
                    raise CredentialsRefused(refusal.reason, TOKEN_KEY)
                raise _Unreadable(refusal.reason)
            self._account_id = str(answer.json()["id"])
            log.info("the access token is the account %s", self._account_id)
        return self._account_id

    def _refusal(self, answer: httpx.Response, doing: str) -> Outcome:
        """A non-200 answer as an outcome; the token's value is never in it."""
        status = answer.status_code
        said = f"{status} from Mastodon {doing}: {outcome.error_of(answer)[1]}"
        if status == 401:
            return Failed(f"{said} (check {TOKEN_KEY})", TOKEN_KEY)
        if status == 403:
            return Failed(f"{said} ({TOKEN_KEY} needs the scopes {SCOPES})", TOKEN_KEY)
        if status == 422:
            return Failed(said, TEMPLATE_KEY)
        if status == 429:
            return NotSent(said, self._reset(answer))
        if status >= 500:
            return Unknown(f"{said}; the status may have been made")
        return Failed(said)

    def _reset(self, answer: httpx.Response) -> datetime | None:
        """A 429's X-RateLimit-Reset: an ISO 8601 instant (rack_attack.rb's
        throttled_responder writes it with iso8601(6))."""
        now = self.clock()
        try:
            reset = datetime.fromisoformat(answer.headers.get("x-ratelimit-reset", ""))
        except ValueError:
            return None
        return outcome.not_before((reset - now).total_seconds(), now) if reset.tzinfo else None

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token.reveal()}"}


class _Unreadable(Exception):
    """The account's statuses cannot be read now (not a refused token)."""


def plain_text(content: str) -> str:
    """A status's HTML `content` as the text it was posted with: paragraphs and
    line breaks back to newlines, tags dropped (a link's hidden parts are its
    text), entities unescaped."""
    text = re.sub(r"<br\s*/?>", "\n", content)
    text = re.sub(r"</p>\s*<p[^>]*>", "\n\n", text)
    return html.unescape(re.sub(r"<[^>]*>", "", text))


def _words(text: str) -> list[str]:
    """Compared word by word: Mastodon trims and folds runs of blank lines."""
    return text.split()


def _posted(status: dict[str, Any], how: str) -> Posted:
    return Posted(str(status["id"]), status.get("url") or status.get("uri") or "", how)


def _posted_again(posted: Posted) -> Posted:
    return Posted(posted.id, posted.url, "posted again under the same Idempotency-Key "
                  "(the server answers the first status if it had made one)")
