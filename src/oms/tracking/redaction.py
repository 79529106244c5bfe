"""Routes whose paths carry a credential (a tracking link's token) or personal data (an email
address or phone number) are logged by their template, never by the path itself."""

from __future__ import annotations

from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send


class TemplatePathRoute(APIRoute):
    """Once the request is answered, its path is replaced by the route's template, so the access
    log (``oms.shared.middleware``, which logs ``scope["path"]`` after the app ran) records
    ``/track/{token}``, not a working link."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().handle(scope, receive, send)
        finally:
            scope["path"] = self.path_format
