"""Talking to the web app as outsiders do: plain HTTP, and SendGrid's signed event webhook."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


@dataclass
class Answer:
    status: int
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


def http(method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> Answer:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Answer(response.status, response.read().decode())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.read().decode())


def public_key_b64(key: ec.EllipticCurvePrivateKey) -> str:
    """The key as SendGrid shows it for `sendgrid.webhook_public_key`."""
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def signed_post(
    url: str, items: list[dict[str, Any]], key: ec.EllipticCurvePrivateKey, age: float = 0, body: bytes | None = None
) -> Answer:
    """POST `items` to the webhook at `url`, signed as SendGrid would (by `key`, `age` seconds ago); `body`, if
    given, is sent instead of the signed one (a tampered post)."""
    raw = json.dumps(items).encode()
    timestamp = str(int(time.time() - age))
    signature = key.sign(timestamp.encode() + raw, ec.ECDSA(hashes.SHA256()))
    headers = {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }
    return http("POST", url, body if body is not None else raw, headers)
