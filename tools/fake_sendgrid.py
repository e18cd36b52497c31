"""A local SendGrid-compatible mail send endpoint, for tests, benchmarks and trying the sendgrid transport
without an account.

It answers `POST /v3/mail/send` the way SendGrid documents it: 202 with `X-Message-Id` (200 in sandbox
mode), 401 for a wrong key, 400 with `{"errors": [...]}` for a request that breaks the documented limits
(1,000 personalizations and recipients, unique addresses, a `to` in each, text/plain before text/html,
custom_args under 10,000 bytes, substitutions at most 10,000 bytes per personalization, at most 10
categories of 255 characters, reserved headers), 413 above 30 MB. It keeps a record of every recipient it
accepted, and can misbehave on purpose (`Faults`): rate limits, 500s, slow answers and connections dropped
after the request was accepted.

    python -m tools.fake_sendgrid --port 4010 --api-key SG.local
    # then: sendgrid.host: http://127.0.0.1:4010 and SENDGRID_API_KEY=SG.local

`GET /__accepted` returns how many times each address was accepted, as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import secrets
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 30 * 1024 * 1024
RESERVED_HEADERS = {
    "x-sg-id",
    "x-sg-eid",
    "received",
    "dkim-signature",
    "content-type",
    "content-transfer-encoding",
    "to",
    "from",
    "subject",
    "reply-to",
    "cc",
    "bcc",
}


@dataclass
class Faults:
    """Probabilities (0–1) of misbehaving on a request, drawn independently per request from `seed`."""

    rate_limit: float = 0.0  # 429 with X-RateLimit-Reset `reset_after` seconds ahead; nothing accepted
    server_error: float = 0.0  # 500; nothing accepted
    slow: float = 0.0  # accepted, answered after `slow_seconds` (a client with a shorter timeout gives up)
    drop_after_accept: float = 0.0  # accepted, then the connection is closed without an answer
    slow_seconds: float = 2.0
    reset_after: float = 1.0
    seed: int | None = None
    # Faults for the first requests, in order, before any random ones: "rate_limit", "server_error", "slow",
    # "drop_after_accept", or "" for a normal answer.
    script: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Accepted:
    """One recipient SendGrid would now deliver to, as that recipient would see the message."""

    email: str
    delivery_id: str | None
    message_id: str
    subject: str = ""
    text: str = ""
    html: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    custom_args: dict[str, str] = field(default_factory=dict)
    from_email: str = ""
    from_name: str | None = None
    name: str | None = None
    recipients_in_personalization: int = 1


def _error(message: str, field_name: str | None = None) -> dict[str, Any]:
    return {"message": message, "field": field_name, "help": None}


def _size(value: dict[str, Any]) -> int:
    """Bytes of keys and values (UTF-8), as SendGrid counts custom_args and substitutions."""
    return sum(len(str(k).encode()) + len(str(v).encode()) for k, v in value.items())


def validate(body: Any) -> list[dict[str, Any]]:
    """The documented limits of v3 mail send; every violation found, as SendGrid reports them."""
    if not isinstance(body, dict):
        return [_error("Bad Request", None)]
    errors: list[dict[str, Any]] = []
    people = body.get("personalizations")
    if not isinstance(people, list) or not people:
        return [
            _error(
                "The personalizations field is required and must have at least one personalization.", "personalizations"
            )
        ]
    if len(people) > 1000:
        errors.append(
            _error("The personalization block is limited to 1000 personalizations per API request.", "personalizations")
        )
    seen: set[str] = set()
    total = 0
    shared_args = body.get("custom_args") or {}
    for index, person in enumerate(people):
        where = f"personalizations.{index}"
        if not isinstance(person, dict) or not person.get("to"):
            errors.append(
                _error(
                    "The to array is required for all personalization objects.",
                    f"{where}.to",
                )
            )
            continue
        for kind in ("to", "cc", "bcc"):
            for entry in person.get(kind, []) or []:
                total += 1
                address = str(entry.get("email", "")).lower() if isinstance(entry, dict) else ""
                if "@" not in address:
                    errors.append(_error("Does not contain a valid address.", f"{where}.{kind}"))
                elif address in seen:
                    errors.append(
                        _error(
                            f"Each email address should be unique across personalizations: {address}", f"{where}.{kind}"
                        )
                    )
                seen.add(address)
        subs = person.get("substitutions")
        if subs is not None:
            if not isinstance(subs, dict) or not all(isinstance(v, str) for v in subs.values()):
                errors.append(_error("Substitutions must be strings.", f"{where}.substitutions"))
            elif _size(subs) > 10000:
                errors.append(
                    _error(
                        "The substitutions for a personalization may not exceed 10,000 bytes.", f"{where}.substitutions"
                    )
                )
        args = person.get("custom_args")
        if args is not None:
            if not isinstance(args, dict) or not all(isinstance(v, str) for v in args.values()):
                errors.append(_error("Custom args must be strings.", f"{where}.custom_args"))
            elif _size({**shared_args, **args}) >= 10000:
                # The limit holds for the custom arguments each message carries (shared + its own).
                errors.append(_error("The custom arguments may not exceed 10,000 bytes.", f"{where}.custom_args"))
        headers = person.get("headers") or {}
        errors += _header_errors(headers, f"{where}.headers")
        if not body.get("subject") and not person.get("subject"):
            errors.append(
                _error(
                    "The subject is required (on the message or on every personalization).",
                    "subject",
                )
            )
    if total > 1000:
        errors.append(
            _error(
                "The total number of recipients (to, cc and bcc) must be at most 1000 per request.", "personalizations"
            )
        )
    if _size(shared_args) >= 10000:
        errors.append(_error("The custom arguments may not exceed 10,000 bytes.", "custom_args"))
    sender = body.get("from")
    if not isinstance(sender, dict) or "@" not in str(sender.get("email", "")):
        errors.append(
            _error(
                "The from object must be provided for every email send, with an email.",
                "from",
            )
        )
    content = body.get("content")
    if not isinstance(content, list) or not content:
        errors.append(_error("Unless a valid template_id is provided, the content parameter is required.", "content"))
    else:
        types = [c.get("type") if isinstance(c, dict) else None for c in content]
        if any(not (isinstance(c, dict) and c.get("value")) for c in content):
            errors.append(
                _error("The content value must be a string at least one character in length.", "content.0.value")
            )
        if "text/plain" in types and types.index("text/plain") != 0:
            errors.append(
                _error("If present, text/plain content must be first, followed by any other content.", "content")
            )
        if len(types) != len(set(types)):
            errors.append(_error("If present, text/plain and text/html may only be provided once.", "content"))
    categories = body.get("categories")
    if categories is not None:
        if not isinstance(categories, list) or len(categories) > 10:
            errors.append(_error("Too many categories: at most 10 per message.", "categories"))
        elif any(not isinstance(c, str) or len(c) > 255 for c in categories) or len(set(categories)) != len(categories):
            errors.append(_error("Categories must be unique strings of at most 255 characters.", "categories"))
    errors += _header_errors(body.get("headers") or {}, "headers")
    sandbox = ((body.get("mail_settings") or {}).get("sandbox_mode") or {}).get("enable")
    if sandbox is not None and not isinstance(sandbox, bool):
        errors.append(_error("The sandbox_mode enable value must be a boolean.", "mail_settings.sandbox_mode.enable"))
    if body.get("reply_to") and body.get("reply_to_list"):
        errors.append(_error("reply_to and reply_to_list cannot be used together.", "reply_to"))
    return errors


def _header_errors(headers: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(headers, dict):
        return [_error("Headers must be an object.", where)]
    errors = []
    for key, value in headers.items():
        if key.lower() in RESERVED_HEADERS:
            errors.append(_error(f"The {key} header is reserved and cannot be set.", f"{where}.{key}"))
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            errors.append(_error("Header values must be strings without line breaks.", f"{where}.{key}"))
    return errors


def _apply(value: str, substitutions: dict[str, str]) -> str:
    for key, replacement in substitutions.items():
        value = value.replace(key, replacement)
    return value


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timeout) or a connection we dropped on purpose is not an error here."""


class FakeSendGrid:
    """The server, run on a background thread: `start()`, `url`, `accepted`, `stop()`."""

    def __init__(
        self,
        api_key: str = "SG.local-test-key",
        *,
        faults: Faults | None = None,
        reject: dict[str, str] | None = None,
        keep_messages: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.api_key = api_key
        self.faults = faults or Faults()
        self.reject = {k.lower(): v for k, v in (reject or {}).items()}
        self.keep_messages = keep_messages
        self.accepted: list[Accepted] = []
        self.statuses: Counter[str] = Counter()  # "202", "429", "dropped" … per request
        self.requests = 0
        self._random = random.Random(self.faults.seed)
        self._lock = threading.Lock()
        self._server = _QuietServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeSendGrid:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FakeSendGrid:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(a.email for a in self.accepted)

    def _fault(self) -> str | None:
        f = self.faults
        with self._lock:
            if f.script:
                return f.script.pop(0) or None
            draw = self._random.random()
        for name, chance in (
            ("rate_limit", f.rate_limit),
            ("server_error", f.server_error),
            ("slow", f.slow),
            ("drop_after_accept", f.drop_after_accept),
        ):
            if draw < chance:
                return name
            draw -= chance
        return None

    def _record(self, body: dict[str, Any], message_id: str) -> None:
        content = {c["type"]: c["value"] for c in body.get("content", [])}
        records = []
        for person in body["personalizations"]:
            subs = person.get("substitutions") or {}
            args = {**(body.get("custom_args") or {}), **(person.get("custom_args") or {})}
            recipients = person["to"] + (person.get("cc") or []) + (person.get("bcc") or [])
            for entry in recipients:
                if not self.keep_messages:
                    records.append(Accepted(entry["email"].lower(), args.get("delivery_id"), message_id))
                    continue
                records.append(
                    Accepted(
                        email=entry["email"].lower(),
                        delivery_id=args.get("delivery_id"),
                        message_id=message_id,
                        subject=_apply(person.get("subject") or body.get("subject", ""), subs),
                        text=_apply(content.get("text/plain", ""), subs),
                        html=_apply(content.get("text/html", ""), subs),
                        headers={**(body.get("headers") or {}), **(person.get("headers") or {})},
                        categories=tuple(body.get("categories") or ()),
                        custom_args=args,
                        from_email=body["from"]["email"],
                        from_name=body["from"].get("name"),
                        name=entry.get("name"),
                        recipients_in_personalization=len(recipients),
                    )
                )
        with self._lock:
            self.accepted.extend(records)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _answer(self, status: int, payload: Any = None, headers: dict[str, str] | None = None) -> None:
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                with fake._lock:
                    fake.statuses[str(status)] += 1

            def do_GET(self) -> None:
                if self.path == "/__accepted":
                    self._answer(200, dict(fake.counts()))
                else:
                    self._answer(404, {"errors": [_error("not found")]})

            def do_POST(self) -> None:
                with fake._lock:
                    fake.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if self.path.rstrip("/") != "/v3/mail/send":
                    self._answer(404, {"errors": [_error("not found")]})
                    return
                if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    self._answer(
                        401, {"errors": [_error("The provided authorization grant is invalid, expired, or revoked")]}
                    )
                    return
                if length > MAX_BODY:
                    self._answer(413, {"errors": [_error("content too large")]})
                    return
                fault = fake._fault()
                if fault == "rate_limit":
                    reset = time.time() + fake.faults.reset_after
                    self._answer(
                        429,
                        {"errors": [_error("too many requests")]},
                        {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": f"{reset:.3f}"},
                    )
                    return
                if fault == "server_error":
                    self._answer(500, {"errors": [_error("internal server error")]})
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    self._answer(400, {"errors": [_error("Bad Request")]})
                    return
                problems = validate(body)
                refused = [
                    p["to"][0]["email"]
                    for p in body.get("personalizations", [])
                    if isinstance(p, dict) and p.get("to") and p["to"][0].get("email", "").lower() in fake.reject
                ]
                problems += [_error(fake.reject[a.lower()], "personalizations.to") for a in refused]
                if problems:
                    self._answer(400, {"errors": problems})
                    return
                message_id = secrets.token_urlsafe(16)[:22]
                sandbox = ((body.get("mail_settings") or {}).get("sandbox_mode") or {}).get("enable") is True
                if not sandbox:
                    fake._record(body, message_id)
                if fault == "drop_after_accept":
                    with fake._lock:
                        fake.statuses["dropped"] += 1
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault == "slow":
                    time.sleep(fake.faults.slow_seconds)
                self._answer(200 if sandbox else 202, None, {"X-Message-Id": message_id})

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="A local SendGrid-compatible mail send endpoint.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4010)
    parser.add_argument("--api-key", default="SG.local-test-key")
    parser.add_argument("--keep-messages", action="store_true", help="Keep each recipient's message in memory.")
    args = parser.parse_args()
    server = FakeSendGrid(args.api_key, keep_messages=args.keep_messages, host=args.host, port=args.port)
    print(server.url, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server._server.serve_forever()


if __name__ == "__main__":
    main()
