"""Hoiio's voice/query_status and voice/get_history for the calls `conference/call` placed
(the seed document names both and says `tag` comes back in them; the fields follow Hoiio's
public API reference for query_status, and its SDKs' parameters for get_history).

Choices where the document is silent:
- Paths `/open/voice/query_status` and `/open/voice/get_history`; parameters, authentication,
  the rate limit, the always-200 answers and `error_malformed_params` exactly as
  `conference/call` (`hoiio.py`).
- `query_status` takes `txn_ref`* (missing: `error_txn_ref_param_missing`; not one of the
  application's: `error_invalid_txn_ref`). The answer: `status`, `txn_ref`, `tag` (only when
  the request gave one, as in notifications), `dest1` (the number called; a conference leg has
  one number, so no `dest2`), `call_status_dest1` once the outcome is known (answered,
  unanswered, busy, failed), `call_state` (`ongoing` until the call is over, then `ended`),
  `room`, `date` (the call's start in GMT+8, "YYYY-MM-DD HH:MM:SS"; absent while the call
  waits for its turn in the list), `currency` and `rate`, and once ended `duration` (minutes,
  rounded up) and `debit`: the reference's "not provided while ongoing".
- `get_history` takes `from` and `to` (optional, "YYYY-MM-DD HH:MM:SS" in GMT+8, calls started
  at or after `from` and before `to`; unreadable: `error_invalid_from` / `error_invalid_to`,
  also when `to` is not after `from`) and `page` (from 1, default 1, 100 entries a page;
  `error_invalid_page`). It lists the application's finished calls out, oldest first, kept
  in the call-detail records (so across restarts): `{status, total_entries_count,
  entries_count, entries: [...]}`, each entry the fields of query_status without `status`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from control.api.auth import plane_of
from control.api.dialects.hoiio import (
    ALLOWED_METHODS,
    GMT8,
    OTHER_METHODS,
    HoiioError,
    answer,
    authenticate,
    fail,
    limiter_of,
    money,
    read_params,
    required,
    wrong_method,
)
from control.api.dialects.hoiio_rooms import public_id
from control.plane import ControlPlane
from control.store.records import Tenant
from control.usecases import history
from control.usecases.errors import NotFound
from control.usecases.history import Transaction

log = structlog.get_logger(__name__)

router = APIRouter(tags=["hoiio"])

PAGE_SIZE = 100
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def transaction_fields(plane: ControlPlane, txn: Transaction) -> dict[str, str]:
    fields = {"txn_ref": txn.ref}
    if txn.tag:
        fields["tag"] = txn.tag
    fields["dest1"] = txn.dest
    if txn.outcome is not None:
        fields["call_status_dest1"] = txn.outcome
    fields["call_state"] = "ended" if txn.ended else "ongoing"
    fields["room"] = public_id(txn.room)
    if txn.started_at is not None:
        fields["date"] = txn.started_at.astimezone(GMT8).strftime(DATE_FORMAT)
    fields["currency"] = plane.config.dialout.currency
    fields["rate"] = money(0)
    if txn.ended:
        fields["duration"] = str(txn.minutes)
        fields["debit"] = money(0)
    return fields


async def caller(request: Request) -> tuple[ControlPlane, Tenant, dict[str, str]]:
    """The plane, the authenticated application (rate limited) and the parameters."""
    plane = plane_of(request)
    params = await read_params(request)
    tenant = await authenticate(plane, params)
    if not limiter_of(request).allow(tenant.id, plane.clock().timestamp()):
        fail("error_rate_limit_exceeded")
    return plane, tenant, params


def gmt8_time(params: dict[str, str], name: str) -> datetime | None:
    raw = params.get(name, "")
    if not raw:
        return None
    try:
        return datetime.strptime(raw, DATE_FORMAT).replace(tzinfo=GMT8).astimezone(UTC)
    except ValueError:
        fail(f"error_invalid_{name}")


def page_number(params: dict[str, str]) -> int:
    raw = params.get("page", "") or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= 1_000_000:
        fail("error_invalid_page")
    return int(raw)


async def query_status(request: Request) -> JSONResponse:
    """voice/query_status: one call out by its txn_ref."""
    try:
        plane, tenant, params = await caller(request)
        ref = required(params, "txn_ref")
        try:
            txn = await history.status(plane, tenant, ref)
        except NotFound:
            fail("error_invalid_txn_ref")
        return answer({"status": "success_ok", **transaction_fields(plane, txn)})
    except HoiioError as exc:
        return answer({"status": exc.status})
    except Exception:
        log.exception("hoiio.internal_error")
        return answer({"status": "error_internal_server_error"})


async def get_history(request: Request) -> JSONResponse:
    """voice/get_history: the application's finished calls out, a page of 100."""
    try:
        plane, tenant, params = await caller(request)
        since, until = gmt8_time(params, "from"), gmt8_time(params, "to")
        if since is not None and until is not None and until <= since:
            fail("error_invalid_to")
        page = page_number(params)
        txns, total = await history.history(
            plane, tenant, since, until, (page - 1) * PAGE_SIZE, PAGE_SIZE
        )
        entries: list[dict[str, Any]] = [transaction_fields(plane, t) for t in txns]
        return answer(
            {
                "status": "success_ok",
                "total_entries_count": total,
                "entries_count": len(entries),
                "entries": entries,
            }
        )
    except HoiioError as exc:
        return answer({"status": exc.status})
    except Exception:
        log.exception("hoiio.internal_error")
        return answer({"status": "error_internal_server_error"})


for _path, _endpoint, _summary in (
    ("/open/voice/query_status", query_status, "Hoiio voice/query_status"),
    ("/open/voice/get_history", get_history, "Hoiio voice/get_history"),
):
    for _method in ALLOWED_METHODS:
        router.add_api_route(
            _path,
            _endpoint,
            methods=[_method],
            name=f"{_endpoint.__name__}_{_method.lower()}",
            summary=_summary,
        )
    router.add_api_route(_path, wrong_method, methods=OTHER_METHODS, include_in_schema=False)
