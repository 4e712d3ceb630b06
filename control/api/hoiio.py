"""Compatibility routes for the hoiio dialect (being written: see issue 6)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=True)
