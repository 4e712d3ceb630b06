"""Offset/limit pagination with the `X-Result-Count` / `X-Total-Count` headers (as the Teaming
document describes them), shared by every list route."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Query, Response

from control.api.auth import PlaneDep
from control.api.errors import invalid

T = TypeVar("T")


@dataclass(frozen=True)
class Page:
    offset: int
    limit: int


async def page(
    plane: PlaneDep, offset: int = Query(0, ge=0), limit: int = Query(50, ge=1)
) -> Page:
    if limit > plane.config.control.max_page:
        raise invalid("limit", f"must be at most {plane.config.control.max_page}")
    return Page(offset, limit)


def counted(response: Response, items: Sequence[T], total: int) -> Sequence[T]:
    """Set the count headers for one page of `total` items."""
    response.headers["X-Result-Count"] = str(len(items))
    response.headers["X-Total-Count"] = str(total)
    return items


PageDep = Annotated[Page, Depends(page)]
