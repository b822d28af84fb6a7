"""What promptseg's HTTP apps share (the API server, the review page, the Label Studio ML backend).

Errors are one JSON shape everywhere, ``{"error": one line, "type": kind}``; bearer tokens are compared
as SHA-256 digests in constant time.
"""

from __future__ import annotations

import hashlib
import secrets

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from promptseg.errors import ConfigError

__all__ = [
    "HTTP_TYPES",
    "INTERNAL_ERROR",
    "check_token",
    "error_body",
    "http_error",
    "token_problem",
    "validation_error",
]

HTTP_TYPES = {
    400: "BadRequest",
    401: "Unauthorized",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "UploadTooLarge",
    415: "UnsupportedMediaType",
}
INTERNAL_ERROR = "internal server error; the server log has the details"
"""What a 500 says; the details go to the server log."""


def error_body(message: str, kind: str) -> dict[str, str]:
    return {"error": " ".join(message.split()) or kind, "type": kind}


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)  # registered for that class only
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    kind = HTTP_TYPES.get(exc.status_code, "HTTPError")
    return JSONResponse(error_body(str(exc.detail), kind), exc.status_code, exc.headers)


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # registered for that class only
    problems = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            problems.append(f"the body is not valid JSON ({err.get('ctx', {}).get('error', 'cannot parse')})")
            continue
        where = ".".join(str(part) for part in err.get("loc", ()) if part not in ("body", "form"))
        problems.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return JSONResponse(error_body("invalid request: " + "; ".join(problems), "RequestValidationError"), 422)


def token_problem(header: bytes | None, digest: bytes) -> str | None:
    if header is None:
        return "this API needs a token: send the header 'Authorization: Bearer <token>'"
    scheme, _, credentials = header.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return "the Authorization header must be 'Bearer <token>'"
    # compare digests: constant time, and the token's length does not leak either
    if not secrets.compare_digest(hashlib.sha256(credentials.strip()).digest(), digest):
        return "wrong token in the Authorization header"
    return None


def check_token(token: str) -> None:
    if not token or not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
        raise ConfigError(
            "the API token must be a non-empty string of printable ASCII without spaces "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
