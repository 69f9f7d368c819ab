"""Read-only access to selected environment variables: ``codemode.env.*``.

Environment variables often hold secrets (API keys, tokens), so nothing is readable unless its key
is listed explicitly. Refusals name the requested key but never reveal any value.
"""

import os
from collections.abc import Mapping, Sequence

from codemode.capabilities.base import HostFn
from codemode.capabilities.errors import CapabilityDenied

__all__ = ["EnvCapability"]


class EnvCapability:
    """``codemode.env``: read environment variables whose keys are explicitly allowed.

    Args:
        allowed_keys: Exact, case-sensitive variable names JavaScript may read. Empty means
            nothing is readable. ``"*"`` allows EVERY variable, including any secrets in the
            process environment; only pass it when the environment holds nothing sensitive.
    """

    namespace: str = "env"
    description: str

    def __init__(self, allowed_keys: Sequence[str]) -> None:
        if isinstance(allowed_keys, (str, bytes)):
            raise TypeError(
                "allowed_keys must be a sequence of variable names, not a single string; "
                f"wrap it in a list: allowed_keys=[{allowed_keys!r}]"
            )
        keys: list[str] = []
        for key in allowed_keys:
            if not isinstance(key, str) or not key or "=" in key or "\0" in key:
                raise ValueError(f"invalid environment variable name in allowed_keys: {key!r}")
            if key not in keys:
                keys.append(key)
        self._allow_all = "*" in keys
        self._keys: tuple[str, ...] = tuple(k for k in keys if k != "*")
        if self._allow_all:
            self.description = "Read any environment variable."
        elif self._keys:
            self.description = f"Read these environment variables: {', '.join(self._keys)}."
        else:
            self.description = "Environment variables (none are allowed, so every read is refused)."

    @property
    def allowed_keys(self) -> tuple[str, ...]:
        """The allowed names (``("*",)`` when every variable is allowed)."""
        return ("*",) if self._allow_all else self._keys

    def exports(self) -> Mapping[str, HostFn]:
        """The JavaScript-visible functions of ``codemode.env``."""
        return {"get": self.get, "list": self.list_keys}

    async def get(self, *, key: str) -> str | None:
        """Read one environment variable.

        Args:
            key: The variable's exact (case-sensitive) name; it must be one of the allowed keys.

        Returns:
            The value, or null if the variable is allowed but not set.
        """
        if not isinstance(key, str):
            raise TypeError(f"key must be a string, got {type(key).__name__}")
        if not (self._allow_all or key in self._keys):
            if self._keys:
                allowed = f"allowed keys: {list(self._keys)}"
            else:
                allowed = "allowed keys: none — pass allowed_keys=[...] to EnvCapability"
            raise CapabilityDenied(f"environment variable {key!r} is not allowed ({allowed})")
        return os.environ.get(key)

    async def list_keys(self) -> list[str]:
        """List the allowed environment variables that are currently set.

        Returns:
            Their names, sorted.
        """
        if self._allow_all:
            return sorted(os.environ)
        return sorted(k for k in self._keys if k in os.environ)
