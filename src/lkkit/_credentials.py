"""`Credentials`: the API key and secret of a LiveKit server.

A plain value with no dependencies (not a pydantic model like the token values), so an
agent worker can read them and register before pydantic and livekit-api are imported.
"""

from __future__ import annotations

import os
from typing import Any

from ._exceptions import InvalidCredentials

__all__ = ["Credentials"]


class Credentials:
    """The API key and secret of a LiveKit server (or project), which sign tokens.

    ```python
    credentials = Credentials(api_key="devkey", api_secret="secret")
    credentials = Credentials.from_env()  # LIVEKIT_API_KEY, LIVEKIT_API_SECRET
    ```

    Immutable and hashable. The secret never shows in `repr()` or `str()`. A secret
    shorter than 32 bytes (like the development server's `secret`) works, but PyJWT
    warns about it (`jwt.InsecureKeyLengthWarning`) on every signature and
    verification.

    Raises:
        InvalidCredentials: when the key or the secret is empty or not a `str`.
    """

    __slots__ = ("_api_key", "_api_secret")
    _api_key: str
    _api_secret: str

    def __init__(self, *, api_key: str, api_secret: str) -> None:
        for name, value in (("api_key", api_key), ("api_secret", api_secret)):
            if not isinstance(value, str):
                raise InvalidCredentials(f"{name} must be a str, not {type(value).__name__}")
            if not value:
                raise InvalidCredentials(f"{name} must not be empty")
        object.__setattr__(self, "_api_key", api_key)
        object.__setattr__(self, "_api_secret", api_secret)

    @property
    def api_key(self) -> str:
        """The API key; it is the `iss` claim of the tokens it signs."""
        return self._api_key

    @property
    def api_secret(self) -> str:
        """The API secret: the HMAC key of the tokens' signature."""
        return self._api_secret

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Credentials are immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Credentials are immutable; cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Credentials):
            return NotImplemented
        return (self.api_key, self.api_secret) == (other.api_key, other.api_secret)

    def __hash__(self) -> int:
        return hash((self.api_key, self.api_secret))

    def __repr__(self) -> str:
        return f"Credentials(api_key={self.api_key!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled into agent job processes; the keyword-only constructor needs help.
        return (_rebuild, (self.api_key, self.api_secret))

    @classmethod
    def from_env(
        cls, *, key_var: str = "LIVEKIT_API_KEY", secret_var: str = "LIVEKIT_API_SECRET"
    ) -> Credentials:
        """Read the credentials from environment variables.

        Raises:
            InvalidCredentials: when a variable is unset or empty.
        """
        values = {name: os.environ.get(name, "") for name in (key_var, secret_var)}
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise InvalidCredentials(f"environment variable(s) not set: {', '.join(missing)}")
        return cls(api_key=values[key_var], api_secret=values[secret_var])


def _rebuild(api_key: str, api_secret: str) -> Credentials:
    return Credentials(api_key=api_key, api_secret=api_secret)
