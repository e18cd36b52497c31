"""Signed per-recipient unsubscribe links (HMAC-SHA256 through itsdangerous' Signer).

A token is `KID.PAYLOAD.SIGNATURE`: PAYLOAD is the SHA-256 of the lower-cased address (the same hash the
suppression list keys on, so the address itself never appears in a URL or a server log), SIGNATURE an HMAC
over it with the secret named by KID. The newest secret signs; every configured secret still verifies, so
links in mail already sent keep working after a rotation for as long as the old secret stays listed.

A token names one address and cannot be forged or reused for another. Signing costs a few microseconds
(itsdangerous' Signer, not its Serializer, which is ten times slower), since a distribution signs one token
per recipient.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from collections.abc import Sequence
from urllib.parse import quote

from itsdangerous import BadSignature, Signer, URLSafeSerializer
from itsdangerous.signer import HMACAlgorithm

from pipeline.models import Recipient
from pipeline.store import address_hash

_SALT = "pipeline.unsubscribe.v2"
_V1_SALT = "pipeline.unsubscribe.v1"  # earlier links: the address itself, serialised; still honoured


def key_id(secret: str) -> str:
    """A short, stable, non-secret name for a secret."""
    return hashlib.sha256(f"kid:{secret}".encode()).hexdigest()[:8]


class _OneShotHMAC(HMACAlgorithm):
    """HMAC-SHA256 through the standard library's one-shot hmac.digest (C, no HMAC object per call)."""

    def __init__(self) -> None:
        super().__init__(hashlib.sha256)

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        return hmac.digest(key, value, "sha256")


class _Signer(Signer):
    """itsdangerous' Signer with its derived key computed once instead of on every signature."""

    @functools.cached_property
    def _derived(self) -> bytes:
        return super().derive_key()

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        return self._derived if secret_key is None else super().derive_key(secret_key)


class UnsubscribeLinks:
    def __init__(self, base_url: str, secrets: Sequence[str], mailto: str | None = None) -> None:
        if not secrets:
            raise ValueError("at least one unsubscribe secret is needed")
        self.base_url = base_url.rstrip("/")
        self.mailto = mailto
        self._signers = {
            key_id(secret): _Signer(secret, salt=_SALT, digest_method=hashlib.sha256, algorithm=_OneShotHMAC())
            for secret in secrets
        }
        self._kid = key_id(secrets[-1])  # the newest signs
        self._signer = self._signers[self._kid]
        self._v1 = URLSafeSerializer(list(secrets), salt=_V1_SALT)

    def token(self, address: str) -> str:
        payload = base64.urlsafe_b64encode(bytes.fromhex(address_hash(address))).rstrip(b"=")
        return f"{self._kid}.{self._signer.sign(payload).decode()}"

    def url(self, address: str) -> str:
        return self._url(self.token(address))

    def mailto_url(self, address: str) -> str | None:
        return self._mailto(self.token(address))

    def _url(self, token: str) -> str:
        return f"{self.base_url}/unsubscribe/{token}"

    def _mailto(self, token: str) -> str | None:
        # Tokens are URL-safe already (base64url and dots), so only the space needs escaping.
        return f"mailto:{self.mailto}?subject=unsubscribe%20{token}" if self.mailto else None

    def recipient(self, delivery_id: int, address: str, name: str | None, release_slug: str | None = None) -> Recipient:
        """A recipient with its https and mailto unsubscribe links, signed once. With the release's slug the
        link's page can offer to stop only that release's categories (the slug is not signed: it can only
        narrow what the token's owner is offered)."""
        token = self.token(address)
        url = self._url(token) + (f"?r={quote(release_slug)}" if release_slug else "")
        return Recipient(delivery_id, address, name, url, self._mailto(token))

    def address_hash_of(self, token: str) -> str | None:
        """The hex SHA-256 of the address the token was issued for (as the suppression list keys it), or
        None if the token is forged, damaged or signed with a secret no longer listed."""
        kid, _, signed = token.partition(".")
        signer = self._signers.get(kid)
        if signer is None:
            return self._v1_hash(token)
        try:
            payload = signer.unsign(signed.encode())
            digest = base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4))
        except (BadSignature, ValueError):
            return None
        return digest.hex() if len(digest) == 32 else None

    def _v1_hash(self, token: str) -> str | None:
        """Links mailed before key ids existed carried the address itself; they keep working (CASL: 60 days)."""
        try:
            address = self._v1.loads(token)
        except BadSignature:
            return None
        return address_hash(address) if isinstance(address, str) else None
