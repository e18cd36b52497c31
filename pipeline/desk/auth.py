"""Who may use the desk: users from config.yaml or the database, argon2 password hashes (argon2-cffi),
a signed session cookie (Starlette's SessionMiddleware), and a CSRF token kept in the session that every
form posts back (the synchronizer-token pattern)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from starlette.requests import Request

from pipeline.config import Settings
from pipeline.store import Store

ROLES = ("editor", "approver")
CSRF_FIELD = "csrf_token"
_hasher = PasswordHasher()
# Verifying a wrong name costs as long as a wrong password, so timing does not reveal which names exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class DeskUser:
    name: str
    role: str
    email: str | None

    @property
    def approver(self) -> bool:
        return self.role == "approver"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _stored(store: Store, settings: Settings, name: str) -> tuple[DeskUser, str, bool] | None:
    """The user and their hash; the database wins over config.yaml. The flag says the hash is in the database."""
    found = store.user(name)
    if found is not None:
        return DeskUser(found.name, found.role, found.email), found.password_hash, True
    configured = next((u for u in settings.users if u.name == name), None)
    if configured is not None:
        return DeskUser(configured.name, configured.role, configured.email), configured.password_hash, False
    return None


def authenticate(store: Store, settings: Settings, name: str, password: str, now: datetime) -> DeskUser | None:
    """The user if the password is theirs; a hash made with weaker parameters is upgraded on the way."""
    found = _stored(store, settings, name.strip())
    try:
        _hasher.verify(found[1] if found else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if found is None:
        return None
    user, stored_hash, in_database = found
    if in_database and _hasher.check_needs_rehash(stored_hash):
        store.save_user(user.name, user.role, hash_password(password), user.email, now)
    return user


def find_user(store: Store, settings: Settings, name: str) -> DeskUser | None:
    found = _stored(store, settings, name)
    return found[0] if found else None


def session_secret(settings: Settings) -> str:
    """A key for the session cookie, derived from the unsubscribe secret so there is one secret to keep."""
    return hmac.new(settings.unsubscribe_secret().encode(), b"desk-session", hashlib.sha256).hexdigest()


def csrf_token(request: Request) -> str:
    """This session's CSRF token, made on first use (the sign-in page makes one before anyone signs in)."""
    session: dict[str, Any] = request.session
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_ok(request: Request, posted: object) -> bool:
    expected = request.session.get("csrf")
    return isinstance(expected, str) and isinstance(posted, str) and hmac.compare_digest(expected, posted)


def _fingerprint(settings: Settings, password_hash: str) -> str:
    """Ties a session to the password it was opened with: changing the password ends every other session."""
    return hmac.new(session_secret(settings).encode(), password_hash.encode(), hashlib.sha256).hexdigest()[:32]


def sign_in(request: Request, store: Store, settings: Settings, user: DeskUser, now: datetime) -> None:
    """A fresh session for the user (a new CSRF token too, so one planted before sign-in is useless)."""
    found = _stored(store, settings, user.name)
    assert found is not None
    request.session.clear()
    request.session.update(
        {
            "user": user.name,
            "since": now.isoformat(),
            "fp": _fingerprint(settings, found[1]),
            "csrf": secrets.token_urlsafe(32),
        }
    )


def signed_in(request: Request, store: Store, settings: Settings, now: datetime) -> DeskUser | None:
    """The signed-in user, if the session is still good: the user still exists with the same password, the
    session is younger than `desk.session_lifetime`, and they have not signed out since (signing out ends
    the user's sessions everywhere, so a copied cookie dies with it)."""
    name, since, fingerprint = (request.session.get(key) for key in ("user", "since", "fp"))
    if not (isinstance(name, str) and isinstance(since, str) and isinstance(fingerprint, str)):
        return None
    try:
        started = datetime.fromisoformat(since)
    except ValueError:
        return None
    found = _stored(store, settings, name)
    if found is None or not hmac.compare_digest(_fingerprint(settings, found[1]), fingerprint):
        return None
    if now - started > settings.desk.session_lifetime or store.signed_out_since(name, started):
        return None
    return found[0]
