"""Bearer-token authentication: who is calling, as an opaque identity sessions are tied to."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from pathlib import Path

import grpc

from gradserve.v1 import AUTHORIZATION_METADATA

from .errors import UnauthenticatedError

ANONYMOUS = ""


def read_tokens(path: str | Path) -> list[str]:
    """Tokens from a file: one per line; blank lines and `#` comments are ignored.

    Raises:
        ValueError: the file holds no token.
    """
    tokens = [line.strip() for line in Path(path).read_text().splitlines()]
    tokens = [t for t in tokens if t and not t.startswith("#")]
    if not tokens:
        raise ValueError(f"{path}: no tokens")
    return tokens


def identity(token: str) -> str:
    """The identity sessions record for a token (a digest: tokens are not kept in sessions)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


class Authenticator:
    """Checks `authorization: Bearer <token>` metadata; with no tokens, everyone is anonymous."""

    def __init__(self, tokens: Iterable[str] = ()):
        # Compared as SHA-256 digests: `hmac.compare_digest` takes time independent of the
        # values only for inputs of one length (Python's docs: unequal lengths may show), so a
        # presented token's time told how long the accepted ones are.
        self._tokens = [_digest(t.encode()) for t in tokens]

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def identify(self, context: grpc.ServicerContext) -> str:
        """The caller's identity.

        Raises:
            UnauthenticatedError: auth is on and the call has no valid token.
        """
        if not self._tokens:
            return ANONYMOUS
        header = ""
        for key, value in context.invocation_metadata() or ():
            if key == AUTHORIZATION_METADATA:
                header = value if isinstance(value, str) else ""
                break
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            raise UnauthenticatedError(
                "missing bearer token: send metadata 'authorization: Bearer <token>'")
        presented = presented.strip()
        candidate = _digest(presented.encode())
        # Compare against every token without stopping early: timing reveals nothing.
        match = False
        for token in self._tokens:
            match |= hmac.compare_digest(candidate, token)
        if not match:
            raise UnauthenticatedError("invalid bearer token")
        return identity(presented)
