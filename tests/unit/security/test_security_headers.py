"""The headers middleware adds frame-ancestors / nosniff to every response, replacing any the app set."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from security.headers import SecurityHeadersMiddleware


def _app(on_space: bool) -> Starlette:
    async def page(request):
        return PlainTextResponse("hi", headers={"X-Content-Type-Options": "whatever"})

    return Starlette(routes=[Route("/", page)], middleware=[Middleware(SecurityHeadersMiddleware, on_space=on_space)])


def test_local_app_may_not_be_framed_by_others():
    r = TestClient(_app(False)).get("/")
    assert r.headers["content-security-policy"] == "frame-ancestors 'self'"
    assert r.headers.get_list("x-content-type-options") == ["nosniff"]


def test_space_allows_the_hub_iframe_only():
    r = TestClient(_app(True)).get("/")
    assert "https://huggingface.co" in r.headers["content-security-policy"] and "*" not in r.headers[
        "content-security-policy"
    ].replace("*.hf.space", "")
