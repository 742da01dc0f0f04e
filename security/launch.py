"""What the security layer adds to `Blocks.launch`: upload cap, login routes, security-headers middleware."""

from __future__ import annotations

from starlette.middleware import Middleware

from .headers import SecurityHeadersMiddleware
from .web import admin_routes


def launch_options(ctx) -> dict:
    s = ctx.settings
    return {
        "max_file_size": f"{int(s.max_upload_mb)}mb",
        "app_kwargs": {
            "routes": admin_routes(ctx.gate, s.proxy_hops),
            "middleware": [Middleware(SecurityHeadersMiddleware, on_space=ctx.gate.on_space)],
        },
    }
