"""Password hashing with argon2id."""

from __future__ import annotations

from argon2 import Parameters, PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 8


class _Hashing:
    """The hasher in use, and a hash to verify against when a login names nobody, so a login
    takes as long whether or not the e-mail exists (made on first use: it costs a hash)."""

    def __init__(self) -> None:
        self.hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile
        self.dummy: str | None = None


_state = _Hashing()


def use_parameters(parameters: Parameters) -> None:
    """Swap the cost profile (tests use argon2's cheapest; stored hashes keep verifying, since
    every hash carries its own parameters)."""
    _state.hasher = PasswordHasher.from_parameters(parameters)
    _state.dummy = None


def hash_password(password: str) -> str:
    return _state.hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _state.hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _state.hasher.check_needs_rehash(password_hash)


def spend_a_verification(password: str) -> None:
    if _state.dummy is None:
        _state.dummy = _state.hasher.hash("not-a-real-password")
    verify_password(_state.dummy, password)
