"""Security headers on every response of the app (pages, API, files), as a plain ASGI middleware.

`frame-ancestors` replaces X-Frame-Options: a Space is shown inside an iframe on huggingface.co, so that origin is
allowed there and only the app itself elsewhere. `nosniff` stops a browser from running an uploaded file as script.
"""

from __future__ import annotations

LOCAL_FRAME_ANCESTORS = "'self'"
SPACE_FRAME_ANCESTORS = "'self' https://huggingface.co https://*.hf.space"


def security_headers(on_space: bool) -> list[tuple[bytes, bytes]]:
    ancestors = SPACE_FRAME_ANCESTORS if on_space else LOCAL_FRAME_ANCESTORS
    return [
        (b"content-security-policy", f"frame-ancestors {ancestors}".encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
    ]


class SecurityHeadersMiddleware:
    def __init__(self, app, on_space: bool = False) -> None:
        self.app = app
        self.headers = security_headers(on_space)
        self._names = {name for name, _ in self.headers}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in self._names]
                message = {**message, "headers": kept + self.headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
