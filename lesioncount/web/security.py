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
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from lesioncount.web.models import ApiToken, AuditEvent, LoginFailure, LoginSession, User, utcnow

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


#: What an API token may be limited to: ``read`` (GET only, in effect) and ``write`` (the role's changes).
TOKEN_SCOPES = ("read", "write")
#: Rights a token without the ``write`` scope never has, whatever its user's role.
WRITE_RIGHTS = frozenset({"write", "correct", "manage_users"})
#: Token lifetimes: the default, and the longest one may ask for.
TOKEN_DAYS_DEFAULT, TOKEN_DAYS_MAX = 90, 365


@dataclass(frozen=True)
class Actor:
    """Who is making a request and how they proved it."""

    user: User
    via: str  # "session" or "token"
    csrf_token: str = ""
    scopes: frozenset[str] = field(default_factory=lambda: frozenset(TOKEN_SCOPES))

    @property
    def clinic_id(self) -> int:
        return self.user.clinic_id

    def can(self, right: str) -> bool:
        if right in WRITE_RIGHTS and "write" not in self.scopes:
            return False
        return right in ROLE_RIGHTS.get(self.user.role, frozenset())


def authenticate(db: Session, username: str, password: str) -> User | None:
    """The active user with this name whose password this is. Names are unique per clinic only, so the
    password tells apart two clinics' users of one name; should it fit both, nobody is logged in."""
    users = [u for u in db.scalars(select(User).where(User.username == username)) if u.active]
    # Verify against a dummy hash for unknown users too, so timing does not reveal which names exist.
    if not users:
        verify_password(_DUMMY_HASH, password)
        return None
    fits = [u for u in users if verify_password(u.password_hash, password)]
    if len(fits) != 1:
        return None
    user = fits[0]
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


def create_api_token(
    db: Session, user: User, name: str, *, days: int = TOKEN_DAYS_DEFAULT, scopes: str = "read write"
) -> tuple[str, ApiToken]:
    """A new bearer token valid for ``days``; the plain token is returned once and never stored.

    Raises:
        ValueError: ``days`` outside 1-365, or scopes other than ``read`` and ``write`` (``read`` is implied).
    """
    if not 1 <= days <= TOKEN_DAYS_MAX:
        raise ValueError(f"a token lasts 1 to {TOKEN_DAYS_MAX} days, not {days}")
    asked = set(scopes.split())
    if not asked <= set(TOKEN_SCOPES):
        raise ValueError(f"unknown token scope(s) {', '.join(sorted(asked - set(TOKEN_SCOPES)))}; use read, write")
    token = "lct_" + secrets.token_urlsafe(32)
    row = ApiToken(
        token_hash=token_digest(token),
        user_id=user.id,
        name=name[:100] or "token",
        expires_at=utcnow() + dt.timedelta(days=days),
        scopes=" ".join(s for s in TOKEN_SCOPES if s in asked | {"read"}),
    )
    db.add(row)
    db.flush()
    return token, row


def token_actor(db: Session, authorization: str | None) -> Actor | None:
    if not authorization or not authorization.lower().startswith("bearer "):
        return None
    token = authorization[7:].strip()
    row = db.scalar(select(ApiToken).where(ApiToken.token_hash == token_digest(token)))
    now = utcnow()
    if row is None or row.revoked or not row.user.active or (row.expires_at is not None and now >= row.expires_at):
        return None
    row.last_used_at = now
    db.commit()
    return Actor(user=row.user, via="token", scopes=frozenset(row.scopes.split()))


#: Failed logins are remembered this long (in the database, so a restart does not clear them).
THROTTLE_WINDOW = dt.timedelta(hours=1)
#: After the free failures, each further one doubles the wait before the next try: 30 s, 1, 2, 4 ... 15 min.
BACKOFF_BASE_S, BACKOFF_MAX_S = 30.0, 900.0
#: One user name from one address: a colleague mistyping at the clinic's shared address slows only
#: that name from that address, never the other users behind the same NAT.
FREE_PER_USER_AND_ADDRESS = 5
#: One user name from addresses it has never logged in from: guessing from elsewhere slows those
#: addresses only, so nobody can lock a named user out of the addresses they really use.
FREE_PER_USER_ELSEWHERE = 20
#: One address trying many names (password spraying).
FREE_PER_ADDRESS = 100
#: An address counts as the user's own for this long after a successful login from it.
KNOWN_ADDRESS_DAYS = 90


def _backoff_left(times: list[dt.datetime], free: int, now: dt.datetime) -> float:
    """Seconds still to wait after ``times`` (failures, oldest first) when ``free`` of them cost nothing."""
    if len(times) < free:
        return 0.0
    wait = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (len(times) - free))
    return max(0.0, (times[-1] + dt.timedelta(seconds=wait) - now).total_seconds())


class LoginThrottle:
    """Slows password guessing with exponential back-off per user name and address (the rules above).

    Failures live in the ``login_failures`` table. ``now`` is the clock (tests move it forward).
    """

    def __init__(self, now: Callable[[], dt.datetime] = utcnow) -> None:
        self.now = now

    def wait_s(self, db: Session, username: str, ip: str) -> float:
        """Seconds before ``username`` may try again from ``ip`` (0: now)."""
        name, now = username.lower(), self.now()
        recent = select(LoginFailure.at).where(LoginFailure.at >= now - THROTTLE_WINDOW).order_by(LoginFailure.at)
        waits = [
            _backoff_left(
                list(db.scalars(recent.where(LoginFailure.username == name, LoginFailure.ip == ip))),
                FREE_PER_USER_AND_ADDRESS,
                now,
            ),
            _backoff_left(list(db.scalars(recent.where(LoginFailure.ip == ip))), FREE_PER_ADDRESS, now),
        ]
        known = db.scalar(
            select(AuditEvent.id).where(
                AuditEvent.action == "login",
                func.lower(AuditEvent.username) == name,
                AuditEvent.ip == ip,
                AuditEvent.at >= now - dt.timedelta(days=KNOWN_ADDRESS_DAYS),
            )
        )
        if known is None:
            elsewhere = list(db.scalars(recent.where(LoginFailure.username == name)))
            waits.append(_backoff_left(elsewhere, FREE_PER_USER_ELSEWHERE, now))
        return max(waits)

    def failed(self, db: Session, username: str, ip: str) -> None:
        now = self.now()
        db.execute(delete(LoginFailure).where(LoginFailure.at < now - THROTTLE_WINDOW))
        db.add(LoginFailure(at=now, username=username.lower()[:100], ip=ip[:64]))

    def succeeded(self, db: Session, username: str, ip: str) -> None:
        db.execute(delete(LoginFailure).where(LoginFailure.username == username.lower(), LoginFailure.ip == ip))


def wait_text(seconds: float) -> str:
    """``"30 seconds"``, ``"4 minutes"``: how long a throttled login must wait, rounded up."""
    if seconds <= 90:
        return f"{max(1, int(math.ceil(seconds)))} seconds"
    return f"{int(math.ceil(seconds / 60))} minutes"


_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))
