"""The desk's pages. Each view takes a Ctx (signed-in user, posted form, runtime) and returns a response;
the checks around it (sign-in, role, CSRF) are in `guarded`. Views call the same functions as the command
line (intake, manage, render, store), so both behave alike."""

from __future__ import annotations

import io
import tempfile
from dataclasses import replace
from datetime import date, datetime, tzinfo
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, available_timezones

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from pipeline import manage
from pipeline.contacts import write_contacts
from pipeline.desk import PAGE_HEADERS, PREFIX, Ctx, _refused, guarded, page
from pipeline.desk.auth import CSRF_FIELD, authenticate, csrf_ok, sign_in
from pipeline.desk.charts import month_of as calendar_month
from pipeline.desk.charts import timeline_svg
from pipeline.desk.compose import FIELDS, document_of, form_of, local_input, shown_instant
from pipeline.errors import FormError, NotFoundError, ReleaseParseError
from pipeline.feed import FeedEntry, render_item
from pipeline.intake import default_due, parse_when, queue_release, zone_or_default
from pipeline.models import OPEN_STATUSES, PREVIEW_CHANNEL, DeliveryStatus, DistributionStatus, Outcome, Release
from pipeline.parse import parse_release
from pipeline.render import previewed
from pipeline.runtime import Runtime
from pipeline.store import StoredRelease, address_hash
from pipeline.tracking import STATUS_RANK

UPLOAD_SUFFIXES = (".txt", ".md", ".markdown", ".docx", ".html", ".htm")
LIVE = (DistributionStatus.SCHEDULED, DistributionStatus.SENDING)
WAITING = (DistributionStatus.SCHEDULED, DistributionStatus.HELD, DistributionStatus.SENDING, DistributionStatus.PAUSED)
SANDBOXED = {
    **PAGE_HEADERS,
    "Content-Security-Policy": "sandbox; default-src 'none'; img-src https: data:; style-src 'unsafe-inline'",
}
ENGAGEMENT = ("delivered", "bounced", "dropped", "opened", "clicked", "complained", "unsubscribed")


# --- sign-in -------------------------------------------------------------------------------------------


def _login_page(
    rt: Runtime, request: Request, status: int = 200, error: str | None = None, next_path: str | None = None
) -> HTMLResponse:
    return page(
        rt, request, "login.html", status, error=error, next=_safe_next(next_path or request.query_params.get("next"))
    )


def _safe_next(target: str | None) -> str:
    """Only a path inside the desk: never another site (an open redirect)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return PREFIX + "/"


def login_routes(rt: Runtime) -> list[BaseRoute]:
    async def show(request: Request) -> Response:
        return _login_page(rt, request)

    async def submit(request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=10)
        if not csrf_ok(request, form.get(CSRF_FIELD)):
            return _refused(rt, request, 403, "The sign-in form expired (no valid CSRF token). Reload and try again.")
        name, password = str(form.get("name") or ""), str(form.get("password") or "")
        user = await run_in_threadpool(authenticate, rt.store, rt.settings, name, password, rt.clock())
        if user is None:
            error = "That name and password do not match a desk user."
            return _login_page(rt, request, 401, error, str(form.get("next") or ""))
        await run_in_threadpool(sign_in, request, rt.store, rt.settings, user, rt.clock())
        await run_in_threadpool(rt.store.record_audit, user.name, "signed in", rt.clock())
        return RedirectResponse(_safe_next(str(form.get("next") or "")), status_code=303)

    async def logout(request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=10)
        if csrf_ok(request, form.get(CSRF_FIELD)):
            name = request.session.get("user")
            if isinstance(name, str):  # ends this user's sessions everywhere, copied cookies included
                await run_in_threadpool(rt.store.record_audit, name, "signed out", rt.clock())
            request.session.clear()
        return RedirectResponse(f"{PREFIX}/login", status_code=303)

    return [
        Route("/login", show, methods=["GET"]),
        Route("/login", submit, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]


# --- home, queue, calendar -------------------------------------------------------------------------------


def home(ctx: Ctx) -> Response:
    store = ctx.rt.store
    return ctx.page(
        "home.html",
        waiting=store.distributions(list(WAITING)),
        releases=store.release_summaries(limit=8),
        totals=store.totals(),
        local=manage.local,
    )


def queue_list(ctx: Ctx) -> Response:
    wanted = [DistributionStatus(s) for s in ctx.request.query_params.getlist("status") if s in _STATUSES]
    rows = ctx.rt.store.distributions(wanted or None)
    return ctx.page(
        "queue.html",
        rows=list(reversed(rows)),
        statuses=list(_STATUSES),
        wanted={s.value for s in wanted},
        local=manage.local,
        pending=lambda d: sum(d.counts.get(s.value, 0) for s in OPEN_STATUSES),
    )


_STATUSES = {s.value: s for s in DistributionStatus}


def calendar_view(ctx: Ctx) -> Response:
    zone = ctx.rt.settings.timezone
    today = ctx.rt.clock().astimezone(ZoneInfo(zone)).date()
    asked = ctx.request.query_params.get("month", "")
    try:
        first = date.fromisoformat(asked + "-01") if asked else today.replace(day=1)
    except ValueError:
        first = today.replace(day=1)
    if not 1971 <= first.year <= 2998:  # room for the previous and next month links
        first = today.replace(day=1)
    month = calendar_month(first)
    by_day: dict[date, list[Any]] = {}
    for dist in ctx.rt.store.distributions():
        day = dist.due_at.astimezone(ZoneInfo(zone)).date()
        if day.year == first.year and day.month == first.month:
            by_day.setdefault(day, []).append(dist)
    return ctx.page("calendar.html", month=month, by_day=by_day, today=today, zone=zone)


# --- releases ----------------------------------------------------------------------------------------------


def releases_list(ctx: Ctx) -> Response:
    return ctx.page("releases.html", releases=ctx.rt.store.release_summaries(), local=manage.local)


def _zones() -> list[str]:
    return sorted(z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/")))


def release_new(ctx: Ctx) -> Response:
    blank = {"embargo_tz": ctx.rt.settings.timezone}
    return ctx.page("write.html", form=blank, release=None, errors={}, zones=_zones(), suffixes=UPLOAD_SUFFIXES)


def _store_release(ctx: Ctx, release: Release, action: str, detail: str) -> Response:
    release_id, state = ctx.rt.store.save_release(release, ctx.rt.clock())
    ctx.rt.store.record_audit(ctx.user.name, action, ctx.rt.clock(), detail, release_id=release_id)
    ctx.flash("ok", f"{detail}: {state}" if state != "new" else detail)
    return ctx.redirect(f"/releases/{release_id}")


def release_upload(ctx: Ctx) -> Response:
    upload = ctx.form.get("document") if ctx.form is not None else None
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise FormError("choose a release document to upload", field="document")
    name = Path(upload.filename).name
    suffix = Path(name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise FormError(f"{name}: the desk reads {', '.join(UPLOAD_SUFFIXES)} files", field="document")
    with tempfile.TemporaryDirectory(prefix="desk-upload-") as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(upload.file.read())
        try:
            release = parse_release(path, ctx.rt.settings.zone)
        except ReleaseParseError as exc:  # name the user's file, not our temporary copy
            where = f"{name}:{exc.line}" if exc.line else name
            raise FormError(f"{where}: {exc.detail}", field="document") from exc
    release = replace(release, source=f"desk upload: {name}")
    return _store_release(ctx, release, "uploaded", f"uploaded {name}")


def _parse_form(ctx: Ctx, corrects: str | None = None) -> tuple[Release, dict[str, str]]:
    form = {key: ctx.value(key) for key in FIELDS}
    text = document_of(form, corrects=corrects)
    with tempfile.TemporaryDirectory(prefix="desk-form-") as folder:
        path = Path(folder) / "release.md"
        path.write_text(text, encoding="utf-8")
        try:
            release = parse_release(path, ctx.rt.settings.zone)
        except ReleaseParseError as exc:
            raise FormError(f"the form could not be read as a release: {exc.detail}") from exc
    return replace(release, source=f"desk form by {ctx.user.name}"), form


def release_write(ctx: Ctx) -> Response:
    try:
        release, _ = _parse_form(ctx)
    except FormError as exc:
        return _form_again(ctx, None, exc)
    return _store_release(ctx, release, "wrote", f"wrote {release.title!r}")


def _form_again(ctx: Ctx, stored: StoredRelease | None, exc: FormError) -> Response:
    form = {key: ctx.value(key) for key in FIELDS}
    errors = {exc.field or "form": str(exc)}
    return ctx.page(
        "write.html", 400, form=form, release=stored, errors=errors, zones=_zones(), suffixes=UPLOAD_SUFFIXES
    )


def _stored(ctx: Ctx) -> StoredRelease:
    stored = ctx.rt.store.release(ctx.param("release_id"))
    if ctx.rt.store.digest_issue(stored.id) is not None:
        raise NotFoundError(f"release {stored.id} is a digest email, not a release")
    return stored


def release_show(ctx: Ctx) -> Response:
    stored = _stored(ctx)
    store = ctx.rt.store
    dists = store.distributions(release_id=stored.id)
    return ctx.page(
        "release.html",
        stored=stored,
        release=stored.release,
        distributions=dists,
        audit=store.audit_log(release_id=stored.id, limit=20),
        local=manage.local,
        zone=ctx.rt.settings.timezone,
    )


def release_edit(ctx: Ctx) -> Response:
    stored = _stored(ctx)
    if ctx.form is None:
        form = form_of(stored.release, ctx.rt.settings.timezone)
        return ctx.page("write.html", form=form, release=stored, errors={}, zones=_zones(), suffixes=UPLOAD_SUFFIXES)
    store, now = ctx.rt.store, ctx.rt.clock()
    own = store.distributions(release_id=stored.id)
    started = stored.published_at is not None or bool(own)
    try:
        # Queued or public: the edit replaces this release in place (same slug, page and ledger).
        release, _ = _parse_form(ctx, corrects=stored.slug if started else None)
    except FormError as exc:
        return _form_again(ctx, stored, exc)
    new_id, state = store.save_release(release, now)
    if new_id != stored.id and not started and not store.delete_draft(stored.id):
        ctx.flash("ok", f"the earlier draft (release {stored.id}) is kept: something refers to it")
    store.record_audit(ctx.user.name, "edited", now, f"{state}: {release.title!r}", release_id=new_id)
    if ctx.rt.settings.desk.require_approval and state != "unchanged":
        # What was approved is not what would go out any more: its waiting distributions need approval again.
        note = f"{manage.AWAITING_APPROVAL} again (edited by {ctx.user.name})"
        for dist in own:
            if dist.status in (DistributionStatus.SCHEDULED, DistributionStatus.HELD) and store.set_status(
                dist.id,
                DistributionStatus.HELD,
                note,
                only_from=[DistributionStatus.SCHEDULED, DistributionStatus.HELD],
            ):
                store.record_audit(
                    ctx.user.name, "needs approval again", now, "the release was edited", new_id, dist.id
                )
    ctx.flash("ok", f"saved ({state})")
    return ctx.redirect(f"/releases/{new_id}")


# --- preview ---------------------------------------------------------------------------------------------


def release_preview(ctx: Ctx) -> Response:
    stored = _stored(ctx)
    rendition = ctx.rt.renderer.email(stored.release, stored.slug)
    _, text = previewed(ctx.rt.renderer, rendition)
    item = render_item(ctx.rt.renderer, FeedEntry(stored.release, stored.slug, ctx.rt.clock()), ctx.rt.clock())
    return ctx.page(
        "preview.html", stored=stored, release=stored.release, subject=rendition.subject, text=text, feed_item=item
    )


def release_email_html(ctx: Ctx) -> Response:
    stored = _stored(ctx)
    embargoed = ctx.request.query_params.get("embargoed") == "1" and stored.release.embargo is not None
    html, _ = previewed(ctx.rt.renderer, ctx.rt.renderer.email(stored.release, stored.slug, embargoed))
    return HTMLResponse(html, headers=SANDBOXED)


def release_page_html(ctx: Ctx) -> Response:
    stored = _stored(ctx)
    return HTMLResponse(ctx.rt.renderer.page(stored.release, stored.slug, stored.published_at), headers=SANDBOXED)


def release_test_email(ctx: Ctx) -> Response:
    stored = _stored(ctx)
    if not ctx.user.email:
        raise FormError(
            f"your desk user has no email address: `pipeline users add {ctx.user.name} --role {ctx.user.role} "
            "--email YOU@…` adds one"
        )
    rendition = ctx.rt.renderer.email(stored.release, stored.slug)
    rendition = replace(rendition, subject=f"[TEST] {rendition.subject}", release_slug=f"test-{stored.slug}")
    recipient = ctx.rt.links.recipient(0, ctx.user.email, ctx.user.name, stored.slug)
    transport = ctx.rt.transport()
    try:
        (result,) = transport.send(rendition, [recipient])
    finally:
        transport.close()
    ctx.rt.store.record_audit(
        ctx.user.name, "test email", ctx.rt.clock(), f"to {ctx.user.email}: {result.outcome.value}", stored.id
    )
    ok = result.outcome is Outcome.ACCEPTED
    ctx.flash("ok" if ok else "error", f"test email to {ctx.user.email}: {result.outcome.value} {result.error or ''}")
    return ctx.redirect(f"/releases/{stored.id}/preview")


# --- queueing ----------------------------------------------------------------------------------------------


def release_queue(ctx: Ctx) -> Response:
    stored = _stored(ctx)
    rt = ctx.rt
    audiences = {name: manage.recipient_count(rt.store, rt.settings, [name]) for name in rt.settings.audiences}
    if ctx.form is None:
        zone_name = rt.settings.timezone
        due = default_due(stored.release, ZoneInfo(zone_name), rt.clock())
        chosen = list(stored.release.audiences or rt.settings.releases.default_audiences)
        form = {"at": local_input(due, ZoneInfo(zone_name)), "at_utc": due.isoformat(), "tz": zone_name, "preview": ""}
        return ctx.page(
            "queue_form.html", stored=stored, audiences=audiences, chosen=chosen, form=form, count=None, zones=_zones()
        )
    chosen = [a for a in ctx.values("audience") if a in audiences]
    form = {
        "at": ctx.value("at"),
        "at_utc": ctx.value("at_utc"),
        "tz": ctx.value("tz") or rt.settings.timezone,
        "preview": ctx.value("preview"),
    }
    preview = form["preview"] == "1"
    if not chosen:
        raise FormError("choose at least one audience", field="audience")
    zone, zone_name = zone_or_default(form["tz"], rt.settings)
    when = _when(ctx, "at", zone, rt.clock())
    count = manage.recipient_count(rt.store, rt.settings, chosen, preview)
    if ctx.value("step") != "confirm":  # first the count and the time, in words; then a confirmation
        return ctx.page(
            "queue_form.html",
            stored=stored,
            audiences=audiences,
            chosen=chosen,
            form=form,
            count=count,
            when=manage.local(when, zone_name),
            zones=_zones(),
        )
    approval = rt.settings.desk.require_approval
    note = f"{manage.AWAITING_APPROVAL} (queued by {ctx.user.name})" if approval else None
    dist_id, _ = queue_release(
        rt.store, rt.settings, stored.release, chosen, when, zone_name, preview=preview, held_note=note
    )
    assert dist_id is not None
    what = "embargoed preview" if preview else "distribution"
    detail = f"{what} to {', '.join(chosen)} ({count} recipients) for {manage.local(when, zone_name)}"
    rt.store.record_audit(ctx.user.name, "queued", rt.clock(), detail, stored.id, dist_id)
    if approval:
        ctx.flash("ok", f"queued {detail}; it waits for an approver other than you")
    else:
        ctx.flash("ok", f"queued {detail}")
    return ctx.redirect(f"/distributions/{dist_id}")


# --- distributions -----------------------------------------------------------------------------------------


def _when(ctx: Ctx, field: str, zone: tzinfo, now: datetime) -> datetime:
    """The time a form's `field` names (empty: now); the instant the page showed in `<field>_utc` while the
    field still shows it (see shown_instant)."""
    text = ctx.value(field)
    exact = shown_instant(text, ctx.value(f"{field}_utc"), zone) if text else None
    return exact or parse_when(text.replace("T", " ") if text else "now", zone, now)


def _progress(ctx: Ctx, dist_id: int) -> dict[str, Any]:
    dist = ctx.rt.store.distribution(dist_id)
    done = sum(n for status, n in dist.counts.items() if status not in {s.value for s in OPEN_STATUSES})
    accepted = STATUS_RANK[DeliveryStatus.ACCEPTED]
    sent = sum(n for status, n in dist.counts.items() if STATUS_RANK.get(DeliveryStatus(status), 0) >= accepted)
    return {
        "id": dist.id,
        "status": dist.status.value,
        "total": dist.total,
        "done": done,
        "sent": sent,
        "counts": dict(sorted(dist.counts.items())),
        "engagement": {k: v for k, v in ctx.rt.store.event_counts(dist.id).items() if k in ENGAGEMENT},
        "live": dist.status in LIVE,
    }


def distribution_show(ctx: Ctx) -> Response:
    dist_id = ctx.param("dist_id")
    store = ctx.rt.store
    dist = store.distribution(dist_id)
    stored = store.release(dist.release_id)
    audit = store.audit_log(distribution_id=dist_id, limit=50)
    queued_by = store.queued_by(dist_id)
    waiting_approval = manage.awaiting_approval(store, dist_id)
    return ctx.page(
        "distribution.html",
        dist=dist,
        stored=stored,
        progress=_progress(ctx, dist_id),
        chart=timeline_svg(store.event_timeline(dist_id), f"Distribution {dist_id} over time"),
        audit=audit,
        local=manage.local,
        preview=dist.channel == PREVIEW_CHANNEL,
        waiting_approval=waiting_approval,
        may_approve=waiting_approval and ctx.user.approver and queued_by != ctx.user.name,
        due_local=local_input(dist.due_at, ZoneInfo(dist.timezone)),
        zones=_zones(),
        engagement_labels=ENGAGEMENT,
    )


def distribution_progress(ctx: Ctx) -> Response:
    return JSONResponse(_progress(ctx, ctx.param("dist_id")), headers={"Cache-Control": "no-store"})


def _act(ctx: Ctx, action: str) -> Response:
    dist_id = ctx.param("dist_id")
    store, now = ctx.rt.store, ctx.rt.clock()
    if action == "hold":
        detail = manage.hold(store, dist_id)
    elif action == "release":
        detail = f"released: {manage.release(store, dist_id, now, retry_failed=ctx.value('retry_failed') == '1').value}"
    elif action == "cancel":
        detail = f"cancelled; {manage.cancel(store, dist_id)} recipients will not be sent"
    elif action == "approve":
        if store.queued_by(dist_id) == ctx.user.name:
            raise FormError("a distribution needs an approver other than the person who queued it")
        detail = (
            f"approved; goes {manage.local(manage.approve(store, dist_id, now), store.distribution(dist_id).timezone)}"
        )
    else:  # reschedule
        held = store.distribution(dist_id).status is DistributionStatus.HELD
        if held and not ctx.user.approver and not manage.awaiting_approval(store, dist_id):
            raise FormError("only an approver may move a held distribution (moving it lets it go)")
        zone, zone_name = zone_or_default(ctx.value("tz") or store.distribution(dist_id).timezone, ctx.rt.settings)
        when = _when(ctx, "at", zone, now)
        manage.reschedule(store, dist_id, when, zone_name)
        detail = f"rescheduled for {manage.local(when, zone_name)}"
    dist = store.distribution(dist_id)
    store.record_audit(ctx.user.name, action, now, detail, dist.release_id, dist_id)
    ctx.flash("ok", f"distribution {dist_id} {detail}")
    return ctx.redirect(f"/distributions/{dist_id}")


# --- contacts ------------------------------------------------------------------------------------------------


def contacts_list(ctx: Ctx) -> Response:
    text = ctx.request.query_params.get("q", "")[:200]
    asked = ctx.request.query_params.get("page", "1")
    page = max(1, int(asked)) if asked.isascii() and asked.isdigit() and len(asked) < 7 else 1
    size = 50
    people, total, suppressed = ctx.rt.store.search_contacts(text, size, (page - 1) * size)
    pages = max(1, -(-total // size))
    return ctx.page(
        "contacts.html",
        people=people,
        total=total,
        suppressed=suppressed,
        q=text,
        page=page,
        pages=pages,
        link=lambda p: f"{PREFIX}/contacts?" + urlencode({"q": text, "page": p}),
    )


def contacts_csv(ctx: Ctx) -> Response:
    text = ctx.request.query_params.get("q", "")[:200]
    people, _, _ = ctx.rt.store.search_contacts(text, limit=10**9)
    suppressed = ctx.rt.store.suppressed_hashes()
    out = io.StringIO()
    count = write_contacts(people, out, {p.email for p in people if address_hash(p.email) in suppressed})
    ctx.rt.store.record_audit(ctx.user.name, "exported contacts", ctx.rt.clock(), f"{count} rows, search {text!r}")
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="contacts.csv"', "Cache-Control": "no-store"},
    )


def suppressions(ctx: Ctx) -> Response:
    text = ctx.request.query_params.get("q", "")[:200]
    return ctx.page("suppressions.html", rows=ctx.rt.store.suppression_list(text), q=text)


# --- assets ------------------------------------------------------------------------------------------------


def _asset(name: str, media_type: str) -> Route:
    body = resources.files("pipeline").joinpath("templates", "desk", name).read_bytes()

    async def serve(_: Request) -> Response:
        return Response(body, media_type=media_type, headers={"Cache-Control": "max-age=3600"})

    return Route(f"/static/{name}", serve, methods=["GET"])


def routes(rt: Runtime) -> list[BaseRoute]:
    def route(path: str, view: Any, methods: tuple[str, ...] = ("GET",), approver: bool = False) -> Route:
        return Route(path, guarded(rt, view, approver), methods=list(methods))

    def action(name: str, approver: bool) -> Route:
        return route(f"/distributions/{{dist_id:int}}/{name}", lambda ctx: _act(ctx, name), ("POST",), approver)

    return [
        *login_routes(rt),
        _asset("desk.css", "text/css; charset=utf-8"),
        _asset("desk.js", "text/javascript; charset=utf-8"),
        route("/", home),
        route("/queue", queue_list),
        route("/calendar", calendar_view),
        route("/releases", releases_list),
        route("/releases/new", release_new),
        route("/releases/upload", release_upload, ("POST",)),
        route("/releases/write", release_write, ("POST",)),
        route("/releases/{release_id:int}", release_show),
        route("/releases/{release_id:int}/edit", release_edit, ("GET", "POST")),
        route("/releases/{release_id:int}/preview", release_preview),
        route("/releases/{release_id:int}/email.html", release_email_html),
        route("/releases/{release_id:int}/page.html", release_page_html),
        route("/releases/{release_id:int}/test-email", release_test_email, ("POST",)),
        route("/releases/{release_id:int}/queue", release_queue, ("GET", "POST")),
        route("/distributions/{dist_id:int}", distribution_show),
        route("/distributions/{dist_id:int}/progress.json", distribution_progress),
        action("hold", approver=False),
        action("reschedule", approver=False),
        action("release", approver=True),
        action("cancel", approver=False),
        action("approve", approver=True),
        route("/contacts", contacts_list),
        route("/contacts.csv", contacts_csv),
        route("/suppressions", suppressions),
    ]
