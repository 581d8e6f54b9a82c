"""The repository's fake X, price and Telegram APIs (tests/fakes), run as a
service inside the systemd test's container, on fixed loopback ports.

Every tweet the fake X stores is appended, as a JSON line, to --tweets, which
the test reads; --credentials gets the credentials the fakes accept, one file
per systemd credential name, for LoadCredential=; `GET /ask?user_id=N&text=T`
on --control-port sends T to the bot as user N and answers the bot's reply;
`GET /fault?status=503&times=1` makes the fake X answer its next POST
/2/tweets (times of them) with that status.
Stdlib only, like the fakes, so that the container's bare python3 runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.fakes.base import Fault
from tests.fakes.price import FakePrice
from tests.fakes.telegram import TOKEN, FakeTelegram
from tests.fakes.x import CREDENTIALS, FakeX, Tweet


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--x-port", type=int, required=True)
    p.add_argument("--price-port", type=int, required=True)
    p.add_argument("--telegram-port", type=int, required=True)
    p.add_argument("--control-port", type=int, required=True)
    p.add_argument("--tweets", type=Path, required=True)
    p.add_argument("--credentials", type=Path, required=True)
    p.add_argument("--ready", type=Path, required=True)
    args = p.parse_args()

    args.credentials.mkdir(mode=0o700, parents=True, exist_ok=True)
    secrets = {f"x_{key}": value for key, value in CREDENTIALS.items()}
    secrets["telegram_token"] = TOKEN
    for name, value in secrets.items():
        file = args.credentials / name
        file.write_text(value + "\n")
        file.chmod(0o600)

    lock = threading.Lock()

    def record(tweet: Tweet) -> None:
        with lock, open(args.tweets, "a") as f:
            f.write(json.dumps({"id": tweet.id, "text": tweet.text}) + "\n")

    x = FakeX()
    x.on_store = record
    x.start(args.x_port)
    price = FakePrice()
    price.start(args.price_port)
    telegram = FakeTelegram()
    telegram.start(args.telegram_port)
    control = ThreadingHTTPServer(("127.0.0.1", args.control_port), _control(telegram, x))
    threading.Thread(target=control.serve_forever, daemon=True).start()
    urls = {"x": x.url, "price": price.endpoint, "telegram": telegram.url}
    args.ready.write_text(json.dumps(urls) + "\n")
    print(f"fakes {urls} (pid {os.getpid()})", flush=True)
    threading.Event().wait()   # until systemd stops the unit


def _control(telegram: FakeTelegram, x: FakeX) -> type[BaseHTTPRequestHandler]:
    class Control(BaseHTTPRequestHandler):
        def do_GET(self) -> None:   # noqa: N802 - http.server's name
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            if url.path == "/fault":
                try:
                    code, times = int(query["status"][0]), int(query.get("times", ["1"])[0])
                except (KeyError, ValueError) as e:
                    self._answer(400, f"bad fault: {e}")
                    return
                x.add_fault("POST /2/tweets", Fault.status_code(code, {"status": code}), times)
                self._answer(200, f"the next {times} POST /2/tweets get {code}")
                return
            try:
                # Emulated (qemu-user) the bot answers in seconds, not milliseconds.
                reply = telegram.ask(int(query["user_id"][0]), query["text"][0], timeout=50)
                status, body = 200, reply
            except (AssertionError, KeyError, ValueError) as e:
                status, body = 504, f"no reply: {e}"
            self._answer(status, body)

        def _answer(self, status: int, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Control


if __name__ == "__main__":
    main()
