"""413 for an upload over ``serve.max_upload_mb``, declared or not: a body announced larger is refused before
it is read, and one sent without a length (chunked) is cut off at the first chunk past the limit, before
Starlette spools it to disk and the route reads it into memory."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import error_response

FORM_OVERHEAD_BYTES = 100_000  # multipart boundaries and the other fields


class UploadTooLarge(HTTPException):
    """Raised from the body stream inside the route's form parsing (FastAPI passes HTTPExceptions through)."""

    param, code = "file", "file_too_large"


class UploadLimit:
    """ASGI middleware over the POST routes in ``paths``."""

    def __init__(self, app: ASGIApp, max_mb: float, paths: tuple[str, ...]):
        self.app, self.max_mb, self.paths = app, max_mb, paths
        self.limit = max_mb * 1e6 + FORM_OVERHEAD_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"").decode()
        if declared.isdigit() and int(declared) > self.limit:
            response = error_response(413, f"upload of {int(declared) / 1e6:.1f} MB, the limit is {self.max_mb:g} MB",
                                      UploadTooLarge.param, UploadTooLarge.code)
            return await response(scope, receive, send)
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise UploadTooLarge(413, f"upload of more than {self.max_mb:g} MB, the limit")
            return message

        await self.app(scope, counted, send)
