"""Domain errors of the use cases. They say what went wrong, never how an API answers it:
the native API and each dialect map them to their own status codes and bodies."""

from __future__ import annotations


class DomainError(Exception):
    """Base of the use cases' refusals; `str(error)` is a message for people."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    """Nothing of that name belongs to the tenant (another tenant's things are unknown too)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found")
        self.what = what


class Conflict(DomainError):
    """The request is well formed but the current state refuses it."""


class NameTaken(Conflict):
    """An open conference of that name exists (this tenant's or another's)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"name: conference {name!r} already exists")
        self.name = name


class NameUnavailable(NameTaken):
    """The name is not this tenant's to take: another tenant holds it (open or ended), it is a
    room of the configuration file or an IVR user, or callers are in a room of that name made
    by dialling. One message for every reason, so it never tells whose the name is."""

    def __init__(self, name: str) -> None:
        DomainError.__init__(self, f"name: {name!r} is not available, choose another")
        self.name = name


class Invalid(DomainError):
    """A value the use case cannot act on; names the field at fault."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


class Unavailable(DomainError):
    """The bridge cannot do it here and now (a directory it cannot write): names the problem."""


class LimitExceeded(DomainError):
    """Too many calls queued or up at once for one application."""


class Unauthorized(DomainError):
    """The credentials name no application."""


class Expired(Unauthorized):
    """The token is known but past its expiry (on the control plane's clock)."""
