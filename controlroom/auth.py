"""Operator accounts and sessions: scrypt password hashes, random session tokens, per-session CSRF tokens.

The session cookie holds a random token; the database keeps only its SHA-256 (a stolen database copy
logs nobody in). Each session has its own CSRF token, which the page sends in the X-CSRF-Token header
with every state-changing request (acknowledge, logout); the cookie is also SameSite=Strict and HttpOnly.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from typing import Any, Dict, Optional

import sqlalchemy as sa

from . import db

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SESSION_S = 12 * 3600
USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def hash_password(password: str, salt: Optional[bytes] = None) -> str:
    salt = salt or secrets.token_bytes(16)
    h = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return "scrypt$%d$%d$%d$%s$%s" % (
        SCRYPT_N,
        SCRYPT_R,
        SCRYPT_P,
        base64.b64encode(salt).decode(),
        base64.b64encode(h).decode(),
    )


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, h = stored.split("$")
        if kind != "scrypt":
            return False
        want = base64.b64decode(h)
        got = hashlib.scrypt(
            password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(want)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


# a hash to compare against when the user does not exist (same cost: no user enumeration by timing)
_DUMMY = hash_password("not a password", salt=b"0123456789abcdef")


class Accounts:
    def __init__(self, engine: sa.engine.Engine) -> None:
        self.engine = engine

    def add_user(self, username: str, password: str, replace: bool = False) -> bool:
        """True if created, False if it existed and was updated (replace=True). Raises ValueError."""
        if not USERNAME.match(username):
            raise ValueError("user name %r: 1-64 letters, digits or _ . @ -" % username)
        if len(password) < 8:
            raise ValueError("the password must have at least 8 characters")
        h = hash_password(password)
        with self.engine.begin() as conn:
            exists = conn.execute(sa.select(db.users.c.username).where(db.users.c.username == username)).first()
            if exists and not replace:
                raise ValueError("user %r exists (use --replace to set a new password)" % username)
            if exists:
                conn.execute(db.users.update().where(db.users.c.username == username).values(password_hash=h))
                conn.execute(db.sessions.delete().where(db.sessions.c.username == username))
                return False
            conn.execute(db.users.insert().values(username=username, password_hash=h, created_at=time.time()))
            return True

    def count_users(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(db.users)).scalar() or 0)

    def login(self, username: str, password: str) -> Optional[Dict[str, str]]:
        """A new session {token, csrf, username} or None (wrong name or password)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(db.users.c.password_hash).where(db.users.c.username == username)).first()
        ok = verify_password(password, row.password_hash if row else _DUMMY)
        if not (ok and row):
            return None
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(db.sessions.delete().where(db.sessions.c.expires_at < now))
            conn.execute(
                db.sessions.insert().values(
                    token_hash=db.token_hash(token),
                    username=username,
                    csrf=csrf,
                    created_at=now,
                    expires_at=now + SESSION_S,
                )
            )
        return {"token": token, "csrf": csrf, "username": username}

    def session(self, token: Optional[str]) -> Optional[Dict[str, Any]]:
        if not token:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(db.sessions).where(db.sessions.c.token_hash == db.token_hash(token))).first()
        if row is None or row.expires_at < time.time():
            return None
        return {"username": row.username, "csrf": row.csrf, "expires_at": row.expires_at}

    def logout(self, token: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(db.sessions.delete().where(db.sessions.c.token_hash == db.token_hash(token)))
