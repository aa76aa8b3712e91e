"""The one error tree of nbapps.

Every error the library raises on purpose is an :class:`NbappsError` with a stable code from
:mod:`nbapps.codes`. The CLI maps ``exit_code`` to the process status and the server maps
``http_status`` to the response; neither shows a traceback (those go to the debug log only).
"""
from __future__ import annotations

from typing import Any

from .codes import CODES


class NbappsError(Exception):
    """Base class: ``code`` (NBA###), a human message, an optional fix hint and details."""

    code: str = "NBA100"
    http_status: int = 500
    exit_code: int = 1

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        hint: str | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        known = CODES.get(self.code)
        self.hint = hint if hint is not None else (known.fix if known else None)
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        if self.details is not None:
            out["details"] = self.details
        return out

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class UsageError(NbappsError):
    """Bad command-line or request input (exit 2, HTTP 400)."""

    code = "NBA100"
    http_status = 400
    exit_code = 2


class ParameterError(UsageError):
    """A parameter value refused by the app's parameter contract."""

    code = "NBA101"

    @property
    def messages(self) -> list[str]:
        """One message per refused value (the details'), else the error's own."""
        return [d.get("message", "") for d in (self.details or [])] or [self.message]


class NotebookError(NbappsError):
    """The notebook itself cannot be used (unreadable, invalid, has error findings)."""

    code = "NBA200"
    http_status = 422
    exit_code = 1


class ExecutionError(NbappsError):
    """Running the notebook failed (exit 3)."""

    code = "NBA070"
    http_status = 422
    exit_code = 3


class BundleError(NbappsError):
    """A bundle is invalid, tampered with or too large."""

    code = "NBA201"
    http_status = 400
    exit_code = 1


class AuthRequired(NbappsError):
    code = "NBA300"
    http_status = 401


class PermissionDenied(NbappsError):
    code = "NBA301"
    http_status = 403


class NotFound(NbappsError):
    code = "NBA302"
    http_status = 404


class Conflict(NbappsError):
    code = "NBA303"
    http_status = 409


class TooLarge(NbappsError):
    code = "NBA203"
    http_status = 413
