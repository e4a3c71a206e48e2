"""The API's interactive documentation at ``/api/docs``: Swagger UI from the package's own files
(``static/vendor/swagger-ui-*``, with its licence), so the docs work offline and under the same
Content-Security-Policy as the pages (no CDN, no inline script)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from mercato.web.templating import ENV

SWAGGER_UI = "vendor/swagger-ui-5.35.0"

router = APIRouter(include_in_schema=False)


@router.get("/api/docs", response_class=HTMLResponse)
async def api_docs(request: Request) -> HTMLResponse:
    html = ENV.get_template("api_docs.html").render(
        title=request.app.title, openapi_url=request.app.openapi_url, swagger=SWAGGER_UI
    )
    return HTMLResponse(html)
