"""The back office under ``/admin``: staff only, enforced on every route by the router's
dependency."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from mercato.web.deps import staff_user

router = APIRouter(prefix="/admin", dependencies=[Depends(staff_user)])
