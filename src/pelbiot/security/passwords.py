"""Password hashing (argon2id, cost from Settings) and the password policy.

``Passwords`` is passed to whoever hashes or verifies, so a process (or a test) chooses its cost
in one place; the policy check is a pure function.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from pelbiot.errors import InvalidInputError
from pelbiot.settings import Settings

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


class Passwords:
    """Hash and verify with one argon2id cost. Hashes made at another cost still verify."""

    def __init__(self, *, time_cost: int = 3, memory_kib: int = 65_536) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=4)
        # Verified against when the user does not exist, so an unknown name costs the same time.
        self._dummy_hash = self._hasher.hash("pelbiot-no-such-user")

    @classmethod
    def from_settings(cls, settings: Settings) -> Passwords:
        return cls(
            time_cost=settings.password_hash_time_cost,
            memory_kib=settings.password_hash_memory_kib,
        )

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """Constant-ish time whether or not the user exists (``stored_hash`` None)."""
        try:
            ok = self._hasher.verify(stored_hash or self._dummy_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return bool(ok) and stored_hash is not None

    def matches_any(self, password: str, hashes: list[str]) -> bool:
        return any(self.verify(h, password) for h in hashes)


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
