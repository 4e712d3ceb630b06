"""Store errors: what the API layer turns into 409 and 404."""


class StoreError(Exception):
    """Base class for errors the store raises on purpose."""


class Conflict(StoreError):
    """A unique name (tenant, open conference, token) is already taken."""


class NotFound(StoreError):
    """The row to change does not exist (or belongs to another tenant)."""
