"""Password hashing (argon2id) and the password policy. Pure apart from the hash's CPU cost."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from pelbiot.errors import InvalidInputError

_HASHER = PasswordHasher()
# Verified against when the user does not exist, so an unknown name costs the same time.
_DUMMY_HASH = _HASHER.hash("pelbiot-no-such-user")

_COMMON = frozenset(
    {
        "password",
        "password1",
        "password123",
        "passw0rd",
        "12345678",
        "123456789",
        "1234567890",
        "qwerty123",
        "qwertyuiop",
        "admin123",
        "administrator",
        "letmein123",
        "iloveyou",
        "welcome123",
        "pelbiot123",
        "rahasia123",
        "bismillah",
    }
)


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Constant-ish time whether or not the user exists (``stored_hash`` None)."""
    try:
        ok = _HASHER.verify(stored_hash or _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return bool(ok) and stored_hash is not None


def check_policy(password: str, *, username: str, min_length: int) -> None:
    """Raise InvalidInputError naming what is wrong with a new password."""
    problems = []
    if len(password) < min_length:
        problems.append(f"at least {min_length} characters")
    if len(password) > 256:
        problems.append("at most 256 characters")
    if password.lower() == username.lower() or username.lower() in password.lower():
        problems.append("must not contain the username")
    if password.lower() in _COMMON:
        problems.append("too common")
    if len(set(password)) < 4:
        problems.append("too few different characters")
    if problems:
        raise InvalidInputError(
            "password does not meet the policy: " + ", ".join(problems),
            details={"field": "password"},
        )


def matches_any(password: str, hashes: list[str]) -> bool:
    return any(verify_password(h, password) for h in hashes)
