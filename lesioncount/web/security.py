"""Passwords (argon2), server-side sessions, API tokens, CSRF and roles.

Browsers authenticate with a random session cookie (HttpOnly, SameSite=Lax) whose hash is looked up in
``login_sessions``; every state-changing request from a browser must carry that session's CSRF token (form
field ``csrf_token`` or header ``X-CSRF-Token``). Scripts send ``Authorization: Bearer <token>`` instead;
bearer requests need no CSRF token because a browser never attaches them by itself.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from lesioncount.web.models import ApiToken, LoginSession, User, utcnow

SESSION_COOKIE = "lc_session"
#: Cookie holding the CSRF token of the login form (before any session exists).
PRELOGIN_COOKIE = "lc_prelogin"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
#: What each role may do, beyond reading its own clinic's records.
ROLE_RIGHTS: dict[str, frozenset[str]] = {
    "admin": frozenset({"write", "correct", "manage_users", "read_audit"}),
    "clinician": frozenset({"write", "correct"}),
    "viewer": frozenset(),
}

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """Argon2id hash of ``password``; refuses passwords shorter than 8 characters."""
    if len(password) < 8:
        raise ValueError("a password needs at least 8 characters")
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_equal(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


@dataclass(frozen=True)
class Actor:
    """Who is making a request and how they proved it."""

    user: User
    via: str  # "session" or "token"
    csrf_token: str = ""

    @property
    def clinic_id(self) -> int:
        return self.user.clinic_id

    def can(self, right: str) -> bool:
        return right in ROLE_RIGHTS.get(self.user.role, frozenset())


def authenticate(db: Session, username: str, password: str) -> User | None:
    user = db.scalar(select(User).where(User.username == username))
    # Verify against a dummy hash for unknown users too, so timing does not reveal which names exist.
    if user is None:
        verify_password(_DUMMY_HASH, password)
        return None
    if not user.active or not verify_password(user.password_hash, password):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


def start_session(db: Session, user: User) -> tuple[str, LoginSession]:
    """A new session for ``user``; returns the cookie token (stored only as a hash) and the row."""
    token = secrets.token_urlsafe(32)
    row = LoginSession(token_hash=token_digest(token), user_id=user.id, csrf_token=secrets.token_urlsafe(32))
    db.add(row)
    db.flush()
    return token, row


def session_actor(db: Session, token: str | None, ttl_s: int) -> tuple[Actor, LoginSession] | None:
    """The actor behind a session cookie, or None when it is unknown, expired or its user disabled."""
    if not token:
        return None
    row = db.scalar(select(LoginSession).where(LoginSession.token_hash == token_digest(token)))
    if row is None:
        return None
    now = utcnow()
    if now - row.last_seen_at > dt.timedelta(seconds=ttl_s) or not row.user.active:
        db.delete(row)
        db.commit()
        return None
    if now - row.last_seen_at > dt.timedelta(seconds=60):
        row.last_seen_at = now
        db.commit()
    return Actor(user=row.user, via="session", csrf_token=row.csrf_token), row


def create_api_token(db: Session, user: User, name: str) -> tuple[str, ApiToken]:
    """A new bearer token; the plain token is returned once and never stored."""
    token = "lct_" + secrets.token_urlsafe(32)
    row = ApiToken(token_hash=token_digest(token), user_id=user.id, name=name[:100] or "token")
    db.add(row)
    db.flush()
    return token, row


def token_actor(db: Session, authorization: str | None) -> Actor | None:
    if not authorization or not authorization.lower().startswith("bearer "):
        return None
    token = authorization[7:].strip()
    row = db.scalar(select(ApiToken).where(ApiToken.token_hash == token_digest(token)))
    if row is None or row.revoked or not row.user.active:
        return None
    row.last_used_at = utcnow()
    db.commit()
    return Actor(user=row.user, via="token")


class LoginThrottle:
    """Slows password guessing: after ``max_failures`` failed logins for one user name (or from one address)
    within ``window_s``, further attempts are refused until the window has passed. In memory, per process."""

    def __init__(self, max_failures: int = 5, window_s: float = 900.0) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> list[float]:
        kept = [t for t in self._failures.get(key, []) if now - t < self.window_s]
        self._failures[key] = kept
        return kept

    def blocked(self, username: str, ip: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return any(len(self._recent(k, now)) >= self.max_failures for k in (f"u:{username.lower()}", f"ip:{ip}"))

    def failed(self, username: str, ip: str) -> None:
        now = time.monotonic()
        with self._lock:
            for k in (f"u:{username.lower()}", f"ip:{ip}"):
                self._recent(k, now).append(now)

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(f"u:{username.lower()}", None)


_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))
