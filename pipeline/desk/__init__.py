"""The newsroom desk: the web interface communications staff use instead of the command line, served by
`pipeline serve` under /desk. Server-rendered pages (Jinja2, the project's templates), a little plain
JavaScript for live progress, nothing fetched from the internet.

Every page needs a signed-in user; every POST needs the session's CSRF token; editors draft, preview and
queue; approvers also approve, release, hold and cancel. What anyone does to a release or a distribution is
recorded in the audit trail.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from pipeline.desk.auth import CSRF_FIELD, DeskUser, csrf_ok, csrf_token, session_secret, signed_in
from pipeline.errors import NotFoundError, PipelineError
from pipeline.runtime import Runtime

PREFIX = "/desk"
MAX_UPLOAD = 20 * 1024 * 1024
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "SAMEORIGIN",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: https:; style-src 'self'; script-src 'self'; "
        "frame-src 'self'; frame-ancestors 'self'; form-action 'self'; base-uri 'none'"
    ),
}


@dataclass
class Ctx:
    """One request as a view sees it: who, what was posted, and the runtime."""

    request: Request
    rt: Runtime
    user: DeskUser
    form: FormData | None = None
    flashes: list[tuple[str, str]] = field(default_factory=list)

    def param(self, name: str) -> int:
        return int(self.request.path_params[name])

    def value(self, name: str, default: str = "") -> str:
        got = self.form.get(name) if self.form is not None else None
        return got.strip() if isinstance(got, str) else default

    def values(self, name: str) -> list[str]:
        return [v for v in (self.form.getlist(name) if self.form is not None else []) if isinstance(v, str)]

    def flash(self, kind: str, message: str) -> None:
        """A message shown on the next page (kind: ok, error)."""
        pending = list(self.request.session.get("flash", []))
        self.request.session["flash"] = [*pending, [kind, message]]

    def page(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        flashes = self.request.session.pop("flash", [])
        return page(self.rt, self.request, template, status, self.user, flashes, **context)

    def redirect(self, path: str) -> RedirectResponse:
        return RedirectResponse(PREFIX + path, status_code=303)


View = Callable[[Ctx], Response]


def guarded(rt: Runtime, view: View, approver: bool = False) -> Callable[[Request], Awaitable[Response]]:
    """Sign-in, role and CSRF checks around a view, which then runs in a worker thread (it uses the database)."""

    async def endpoint(request: Request) -> Response:
        user = await run_in_threadpool(signed_in, request, rt.store, rt.settings, rt.clock())
        if user is None:
            if request.method != "GET":
                return _refused(rt, request, 401, "Your session has ended. Sign in again, then repeat what you did.")
            return RedirectResponse(f"{PREFIX}/login?next={quote(request.url.path)}", status_code=303)
        form = None
        if request.method == "POST":
            declared = request.headers.get("content-length", "")
            if not (declared.isascii() and declared.isdigit()):  # browsers always say; a stream could not be capped
                return _refused(rt, request, 411, "A form must be sent with its length (Content-Length).")
            if int(declared) > MAX_UPLOAD:
                return _refused(rt, request, 413, f"That upload is over {MAX_UPLOAD // 2**20} MB.")
            form = await request.form(max_files=1, max_fields=200)
            if not csrf_ok(request, form.get(CSRF_FIELD)):
                return _refused(
                    rt,
                    request,
                    403,
                    "This form did not come from this desk session (no valid CSRF token). "
                    "Reload the page and try again.",
                )
        if approver and not user.approver:
            return _refused(rt, request, 403, "Only an approver may do that.")
        ctx = Ctx(request, rt, user, form)
        try:
            return await run_in_threadpool(view, ctx)
        except NotFoundError as exc:
            return _refused(rt, request, 404, str(exc), user)
        except OverflowError:
            return _refused(rt, request, 400, "That date is outside the years this desk can keep.", user)
        except PipelineError as exc:
            return _refused(rt, request, 400, str(exc), user)
        finally:
            if form is not None:
                await form.close()

    return endpoint


def page(
    rt: Runtime,
    request: Request,
    template: str,
    status: int = 200,
    user: DeskUser | None = None,
    flashes: list[list[str]] | None = None,
    **context: Any,
) -> HTMLResponse:
    """A desk page with what every page shows: the user, the CSRF token for its forms, messages, the nav."""
    html = rt.renderer.render(
        f"desk/{template}",
        user=user,
        csrf=csrf_token(request),
        csrf_field=CSRF_FIELD,
        flashes=flashes or [],
        path=request.url.path,
        desk=PREFIX,
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def _refused(rt: Runtime, request: Request, status: int, message: str, user: DeskUser | None = None) -> HTMLResponse:
    return page(rt, request, "refused.html", status, user, status_code=status, message=message)


def desk_mount(rt: Runtime) -> Mount:
    from pipeline.desk import views

    routes: list[BaseRoute] = [*views.routes(rt)]
    lifetime = int(rt.settings.desk.session_lifetime / timedelta(seconds=1))
    middleware = [
        Middleware(
            SessionMiddleware,
            secret_key=session_secret(rt.settings),
            session_cookie="pipeline_desk",
            max_age=lifetime,
            path=PREFIX,
            same_site="strict",
            https_only=rt.settings.desk.secure_cookies,
        )
    ]
    return Mount(PREFIX, routes=routes, middleware=middleware)


__all__ = ["Ctx", "Route", "desk_mount", "guarded"]
