"""Signed per-recipient unsubscribe links (HMAC via itsdangerous).

A token names one address and cannot be forged or reused for another. Secrets rotate through itsdangerous'
key list: the newest signs, every listed key still verifies, so old links keep working after a rotation.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from itsdangerous import BadSignature, URLSafeSerializer

_SALT = "pipeline.unsubscribe.v1"


class UnsubscribeLinks:
    def __init__(self, base_url: str, secrets: Sequence[str], mailto: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.mailto = mailto
        # itsdangerous signs with the last key and accepts all of them.
        self._serializer = URLSafeSerializer(list(secrets), salt=_SALT)

    def token(self, address: str) -> str:
        return str(self._serializer.dumps(address.lower()))

    def url(self, address: str) -> str:
        return f"{self.base_url}/unsubscribe/{self.token(address)}"

    def mailto_url(self, address: str) -> str | None:
        if not self.mailto:
            return None
        return f"mailto:{self.mailto}?subject={quote('unsubscribe ' + self.token(address))}"

    def address_of(self, token: str) -> str | None:
        """The address a token was issued for, or None if it is forged or damaged."""
        try:
            value = self._serializer.loads(token)
        except BadSignature:
            return None
        return value if isinstance(value, str) else None
