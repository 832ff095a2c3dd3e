"""The FastAPI router of the SensorThings API: ``GET /sta/v1.1[/...]``, read-only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from central.api_shapes import STA_DOC
from central.sta.errors import StaError
from central.sta.service import StaService

PREFIX = "/sta/v1.1"


def sta_router(service: StaService, *, dependencies: Sequence[Any] = ()) -> APIRouter:
    """The API over ``service``; ``dependencies`` (e.g. ``Depends(require_role("read"))``) guard it."""
    router = APIRouter(prefix=PREFIX, dependencies=list(dependencies), tags=["SensorThings API v1.1"])

    def base_of(request: Request) -> str:
        return str(request.base_url).rstrip("/") + PREFIX

    @router.get("", include_in_schema=False)
    @router.get("/", responses=STA_DOC)
    def service_root(request: Request) -> JSONResponse:
        """The service root: entity sets and the conformance classes implemented."""
        return JSONResponse(service.root(base_of(request)))

    @router.get("/{path:path}", responses=STA_DOC)
    def read(request: Request, path: str) -> Response:
        """Any entity set, entity, navigation, property or $ref path, with the STA query options."""
        try:
            body, media_type = service.get(path, request.query_params.multi_items(), base_of(request))
        except StaError as e:
            return JSONResponse(e.body(), status_code=e.status)
        if isinstance(body, str):
            return Response(body, media_type=media_type)
        return JSONResponse(body, media_type=media_type)

    return router
