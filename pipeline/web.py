"""The HTTP app `pipeline serve` runs (Starlette, served by uvicorn): one-click unsubscribe, the SendGrid
event webhook, and the staff desk under /desk (pipeline/desk).

- `GET /unsubscribe/{token}` shows a confirmation page and changes nothing: mail scanners fetch links.
- `POST /unsubscribe/{token}` unsubscribes at once, without cookies or sign-in (RFC 8058 one-click, and the
  confirmation page's button). The suppression is committed before the answer, and every claim of a batch
  checks suppressions, so it beats the next batch of any distribution.
- `POST /webhooks/sendgrid` verifies SendGrid's ECDSA signature over the raw body and the timestamp's age,
  then stores the events once each and acts on them (see tracking.py and Store.record_events).
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from pipeline.desk import desk_mount
from pipeline.runtime import Runtime
from pipeline.tracking import SIGNATURE_HEADER, TIMESTAMP_HEADER, SendGridWebhook, WebhookRefused

log = logging.getLogger(__name__)
MAX_WEBHOOK_BODY = 8 * 1024 * 1024  # SendGrid batches are at most 768 KB; anything far larger is not SendGrid


def create_app(runtime: Runtime) -> Starlette:
    settings = runtime.settings
    webhook = SendGridWebhook(settings.sendgrid.webhook_public_key, settings.tracking.webhook_max_age)

    def page(state: str, status: int, categories: tuple[str, ...] = (), stopped: str | None = None) -> HTMLResponse:
        titles = {
            "confirm": "Unsubscribe",
            "done": "You are unsubscribed",
            "narrowed": "Preferences saved",
            "invalid": "Link not valid",
        }
        html = runtime.renderer.render(
            "unsubscribe.html",
            state=state,
            title=titles[state],
            categories=categories,
            stopped=stopped,
            organization=settings.organization.name,
            postal_address=settings.organization.postal_address,
            language="en",
        )
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    def categories_of(request: Request) -> tuple[str, ...]:
        slug = request.query_params.get("r")
        stored = runtime.store.release_by_slug(slug) if slug else None
        return stored.release.categories if stored is not None else ()

    def confirm(request: Request) -> Response:
        token = request.path_params["token"]
        if runtime.links.address_hash_of(token) is None:
            return page("invalid", 404)
        return page("confirm", 200, categories_of(request))

    async def unsubscribe(request: Request) -> Response:
        digest = runtime.links.address_hash_of(request.path_params["token"])
        if digest is None:
            return page("invalid", 404)
        form = await request.form(max_files=0, max_fields=10)
        scope = str(form.get("scope") or "all")  # RFC 8058 one-click posts carry no scope: everything
        category = scope.removeprefix("category:") if scope.startswith("category:") else None
        if category and category in await run_in_threadpool(categories_of, request):
            await run_in_threadpool(runtime.store.opt_out, digest, category)
            return page("narrowed", 200, stopped=category)
        await run_in_threadpool(runtime.store.suppress_hash, digest, "unsubscribed")
        return page("done", 200)

    async def sendgrid_events(request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_WEBHOOK_BODY:
            return JSONResponse({"error": "payload too large"}, status_code=413)
        chunks, size = [], 0
        async for chunk in request.stream():  # never hold more than the limit, whatever the header said
            size += len(chunk)
            if size > MAX_WEBHOOK_BODY:
                return JSONResponse({"error": "payload too large"}, status_code=413)
            chunks.append(chunk)
        body = b"".join(chunks)
        try:
            webhook.verify(
                body,
                request.headers.get(SIGNATURE_HEADER),
                request.headers.get(TIMESTAMP_HEADER),
                runtime.clock(),
            )
            events = webhook.events(body)
        except WebhookRefused as exc:
            log.warning("sendgrid webhook refused: %s", exc)
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        report = await run_in_threadpool(
            runtime.store.record_events, "sendgrid", events, settings.tracking.soft_bounce_limit, runtime.clock()
        )
        answer: dict[str, Any] = {
            "received": report.received,
            "new": report.new,
            "duplicates": report.duplicates,
            "resolved_in_doubt": report.resolved,
            "suppressed": report.suppressed,
        }
        return JSONResponse(answer)

    def health(_: Request) -> Response:
        return PlainTextResponse("ok")

    def home(_: Request) -> Response:
        return RedirectResponse("/desk/", status_code=303)

    routes: list[BaseRoute] = [
        Route("/", home, methods=["GET"]),
        desk_mount(runtime),
        Route("/unsubscribe/{token}", confirm, methods=["GET"]),
        Route("/unsubscribe/{token}", unsubscribe, methods=["POST"]),
        Route("/webhooks/sendgrid", sendgrid_events, methods=["POST"]),
        Route("/healthz", health, methods=["GET"]),
    ]
    return Starlette(routes=routes)
