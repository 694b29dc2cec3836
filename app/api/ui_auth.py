"""How the dashboard's pages authenticate: the tenant's API key in a cookie.

A browser cannot add an ``Authorization`` header to page loads, ``<video src>`` or
``EventSource``, so the key form stores the key in a cookie that scripts cannot read
(``HttpOnly``), that is never sent with a request started by another site
(``SameSite=Strict``), that only goes to the dashboard's paths (``Path=/ui``; the
``/v1`` API keeps taking the header only) and, over HTTPS, only over HTTPS (``Secure``).
The key is checked exactly as a Bearer key is (revocation, rate limit).

Forms that change something (the question form, sign-out) also carry a token derived
from the key (an HMAC only the key's holder can compute) and must come from this origin
(``Origin`` / ``Sec-Fetch-Site``), so a forged cross-site form fails three ways.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from fastapi import Request, Response

from app.api.deps import authenticate_key
from app.errors import VidnavError
from app.services.auth import TenantContext, Unauthorized

KEY_COOKIE = "vidnav_key"
COOKIE_PATH = "/ui"
MAX_KEY_LENGTH = 200
_CSRF_MESSAGE = b"vidnav-dashboard-form"


class Forbidden(VidnavError):
    """A form that did not come from the dashboard itself."""

    code = "forbidden"
    kind = "forbidden"


def cookie_key(request: Request) -> str | None:
    key = request.cookies.get(KEY_COOKIE)
    return key if key and len(key) <= MAX_KEY_LENGTH else None


async def cookie_tenant(request: Request) -> tuple[TenantContext, str]:
    """The tenant of the key in the cookie, and the key; Unauthorized without one."""
    key = cookie_key(request)
    if key is None:
        raise Unauthorized("no API key: open /ui/login", code="missing_api_key")
    return await authenticate_key(request, key), key


def csrf_token(key: str) -> str:
    """The form token of a key's holder (stable for the key, useless without it)."""
    return hmac.new(key.encode(), _CSRF_MESSAGE, hashlib.sha256).hexdigest()


def check_same_origin(request: Request) -> None:
    """Refuse a form sent from another origin (browsers send ``Origin`` with every form
    post and ``Sec-Fetch-Site`` with every request)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise Forbidden("the form was sent from another site", code="cross_site_form")
    origin = request.headers.get("origin")
    if origin is not None and (origin == "null"
                               or urlsplit(origin).netloc != request.headers.get("host")):
        raise Forbidden("the form was sent from another origin", code="cross_site_form")


def check_form(request: Request, key: str, token: str | None) -> None:
    """A form that changes something: same origin, and the key holder's token."""
    check_same_origin(request)
    if not token or not hmac.compare_digest(token, csrf_token(key)):
        raise Forbidden("the form's token is missing or stale; reload the page",
                        code="invalid_form_token")


def set_key_cookie(response: Response, request: Request, key: str) -> None:
    response.set_cookie(KEY_COOKIE, key, path=COOKIE_PATH, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


def clear_key_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(KEY_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")


def safe_next(path: str | None) -> str:
    """Where to go after the key form: a dashboard path on this server, nothing else."""
    if (path and path.startswith("/ui/") and not path.startswith("//")
            and "\\" not in path and all(ch.isprintable() for ch in path)
            and not path.startswith("/ui/login")):
        return path
    return "/ui/jobs"
