"""The command line: `pipeline [--config PATH] COMMAND`. The only module (with the web app) that prints or exits.

Every PipelineError becomes a one-line message on stderr and exit code 2; no traceback reaches the user
(set PIPELINE_DEBUG=1 to see one for an unexpected error).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline import manage
from pipeline.config import Settings, config_path, load_settings
from pipeline.contacts import Rejected, read_contacts, select, write_contacts
from pipeline.digest import next_fire
from pipeline.errors import PipelineError
from pipeline.feed import FeedEntry, render_item
from pipeline.ingest import IngestReport, ingest_feed
from pipeline.intake import default_due, parse_when, queue_release, zone_or_default
from pipeline.message import MessageTemplate
from pipeline.models import OPEN_STATUSES, DeliveryStatus, DistributionStatus, Release
from pipeline.parse import parse_release
from pipeline.render import write_preview
from pipeline.runtime import Runtime
from pipeline.schedule import SweepReport, Worker
from pipeline.store import address_hash
from pipeline.tracking import STATUS_RANK

console = Console()
err = Console(stderr=True, soft_wrap=True)

STATUS_STYLE = {
    "scheduled": "cyan",
    "sending": "yellow",
    "sent": "green",
    "partial": "magenta",
    "paused": "yellow",
    "cancelled": "dim",
    "held": "bold red",
}


def error(message: str) -> None:
    """One line on stderr; the message is printed as given, never read as markup."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)


def fail(message: str, code: int = 2) -> NoReturn:
    error(message)
    sys.exit(code)


def report_rejected(source: Path, rejected: list[Rejected]) -> None:
    for row in rejected:
        err.print(f"[yellow]{escape(str(source))}:{row.line}:[/] rejected: {escape(row.reason)}", highlight=False)


class PipelineGroup(click.Group):
    """Turns the project's errors into one-line messages and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PipelineError as exc:
            fail(str(exc))
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except Exception as exc:
            if os.environ.get("PIPELINE_DEBUG"):
                raise
            fail(
                f"internal error: {type(exc).__name__}: {exc} (set PIPELINE_DEBUG=1 for details)",
                1,
            )


class State:
    def __init__(self, config: str | None) -> None:
        self.config = config
        self._settings: Settings | None = None
        self._runtime: Runtime | None = None

    @property
    def path(self) -> Path:
        return config_path(self.config)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.path)
        return self._settings

    def optional_settings(self) -> Settings | None:
        """Settings when a config exists (or was named); None when running without one (e.g. `parse`)."""
        if self.config is None and not os.environ.get("PIPELINE_CONFIG") and not self.path.exists():
            return None
        return self.settings

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = Runtime.open(self.settings)
        return self._runtime


pass_state = click.make_pass_decorator(State)


@click.group(cls=PipelineGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config",
    metavar="PATH",
    envvar="PIPELINE_CONFIG",
    help="config.yaml to use (default ./config.yaml; also $PIPELINE_CONFIG).",
)
@click.version_option(package_name="pipeline")
@click.pass_context
def cli(ctx: click.Context, config: str | None) -> None:
    """Press-release distribution pipeline: parse releases, queue them to media lists, send them on
    schedule, and publish the newsroom and its RSS feed.

    Start with `pipeline run --once` on the shipped config.yaml (SQLite, outbox, files under the project)."""
    ctx.obj = State(config)
    ctx.call_on_close(lambda: ctx.obj._runtime.close() if ctx.obj._runtime else None)


# --- parse and preview -------------------------------------------------------------------------------------


@cli.command("parse")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object for one file, a list for several).")
@pass_state
def parse_cmd(state: State, files: tuple[Path, ...], as_json: bool) -> None:
    """Parse release documents (.txt wire copy, .md, .docx, .html) and show their fields and any problems."""
    settings = state.optional_settings()
    zone = settings.zone if settings else None
    parsed: list[dict[str, Any]] = []
    failures = 0
    for path in files:
        try:
            release = parse_release(path, zone)
        except PipelineError as exc:
            failures += 1
            error(str(exc))
            continue
        if as_json:
            parsed.append(release.to_json())
        else:
            _print_release(path, release)
    if as_json and parsed:
        click.echo(json.dumps(parsed[0] if len(files) == 1 else parsed, ensure_ascii=False, indent=2))
    if failures:
        sys.exit(2)


def _print_release(path: Path, release: Release) -> None:
    table = Table(title=str(path), show_header=False, title_justify="left", expand=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in release.to_json().items():
        if key in ("body", "quotes", "about", "contacts", "problems"):
            continue
        table.add_row(key, "—" if value is None else str(value))
    table.add_row("body", f"{len(release.body)} paragraphs" + (f": {release.body[0][:120]}…" if release.body else ""))
    for quote in release.quotes:
        table.add_row("quote", f"{quote.speaker or '(no speaker)'}: {quote.text[:100]}")
    for about in release.about:
        table.add_row("about", about.name)
    for contact in release.contacts:
        table.add_row("contact", ", ".join(v for v in (contact.name, contact.email, contact.phone) if v))
    console.print(table)
    for problem in release.problems:
        console.print(f"[yellow]problem:[/] {escape(problem)}", highlight=False)


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for the previews (default: var/preview/<slug>).",
)
@click.option(
    "--embargoed",
    is_flag=True,
    help="Render the email as an embargoed preview (EMBARGOED UNTIL … in the subject and a banner).",
)
@pass_state
def preview(state: State, file: Path, out: Path | None, embargoed: bool) -> None:
    """Render every variant of one release without sending: email.html, email.txt, message.eml, page.html,
    feed-item.xml."""
    rt = state.runtime
    release = parse_release(file, rt.settings.zone)
    if embargoed and release.embargo is None:
        fail(f"{file}: --embargoed needs a release with an embargo (an EMBARGOED UNTIL line or `embargo:`)")
    folder = out or rt.settings.resolve(rt.settings.state_dir) / "preview" / release.slug
    rendition = rt.renderer.email(release, release.slug, embargoed_preview=embargoed)
    sample = rt.links.recipient(0, "journalist@example.com", "Sample Journalist")
    message = MessageTemplate(rendition).render(sample, rt.clock())
    item = render_item(rt.renderer, FeedEntry(release, release.slug, rt.clock()), rt.clock())
    written = write_preview(rt.renderer, release, release.slug, rendition, folder, message, item)
    table = Table("variant", "file", title=f"Preview of {release.title}", title_justify="left")
    for path in written:
        table.add_row(path.name, str(path))
    console.print(table)
    console.print(f"Open [bold]{folder / 'email.html'}[/] in a browser, or {folder / 'message.eml'} in a mail client.")


# --- contacts ----------------------------------------------------------------------------------------------


@cli.group()
def contacts() -> None:
    """Import and list media contacts."""


@contacts.command("import")
@click.argument("csv_file", metavar="FILE", type=click.Path(path_type=Path))
@pass_state
def contacts_import(state: State, csv_file: Path) -> None:
    """Import or update contacts from a CSV or Excel (.xlsx) file; columns are matched by name, with the
    usual aliases (E-mail, First Name + Last Name, Publication, Beat…; see the README). Good rows are kept,
    all in one transaction; each bad row is reported with its line number."""
    rt = state.runtime
    found = read_contacts(csv_file, rt.settings.contacts.check_deliverability)
    imported, updated, suppressed = rt.store.save_contacts(found.contacts)
    report_rejected(csv_file, found.rejected)
    console.print(
        f"{imported} imported, {updated} updated, {len(found.rejected)} rejected"
        + (f", {found.merged} duplicate rows merged" if found.merged else "")
        + (f", {suppressed} skipped (suppressed)" if suppressed else "")
    )


@contacts.command("list")
@click.option("--audience", "audience_name", metavar="NAME", help="Only contacts in this audience.")
@pass_state
def contacts_list(state: State, audience_name: str | None) -> None:
    """List contacts, optionally those of one audience."""
    rt = state.runtime
    people = list(rt.store.contacts())
    if audience_name:
        people = select(people, rt.settings, [audience_name])
    suppressed = rt.store.suppressed_hashes()
    table = Table(
        "email",
        "name",
        "outlet",
        "beats",
        "regions",
        "lang",
        "tags",
        "embargo",
        title=f"{len(people)} contacts" + (f" in audience {audience_name!r}" if audience_name else ""),
        title_justify="left",
    )
    for person in people:
        style = "dim strike" if address_hash(person.email) in suppressed else None
        table.add_row(
            person.email,
            person.name or "",
            person.outlet or "",
            "; ".join(person.beats),
            "; ".join(person.regions),
            person.language or "",
            "; ".join(person.tags),
            "yes" if person.embargo_trusted else "",
            style=style,
        )
    console.print(table)


@contacts.command("export")
@click.option("--audience", "audience_name", metavar="NAME", help="Only contacts in this audience.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Write to FILE (default: stdout).")
@pass_state
def contacts_export(state: State, audience_name: str | None, out: Path | None) -> None:
    """Write contacts as CSV, in the import's own columns plus `suppressed`: an export imports back."""
    rt = state.runtime
    people = list(rt.store.contacts())
    if audience_name:
        people = select(people, rt.settings, [audience_name])
    suppressed = rt.store.suppressed_hashes()
    if out is None:
        write_contacts(people, sys.stdout, suppressed)
        return
    try:
        with out.open("w", encoding="utf-8", newline="") as handle:
            count = write_contacts(people, handle, suppressed)
    except OSError as exc:
        fail(f"{out}: cannot write: {exc.strerror or exc}")
    err.print(f"{count} contacts written to {out}", highlight=False)


@contacts.command("forget")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def contacts_forget(state: State, email: str, yes: bool) -> None:
    """Erase a person (a GDPR erasure request): their contact record goes, past deliveries and provider
    events keep no address or name, and only a hash of the address stays on the suppression list so they
    are never imported or mailed again."""
    rt = state.runtime
    if not yes and sys.stdin.isatty():
        click.confirm(f"Erase {email} for good?", abort=True)
    changed = rt.store.forget(email, rt.clock())
    console.print(
        f"{email}: {changed['contacts']} contact erased, {changed['deliveries']} deliveries and "
        f"{changed['events']} provider events anonymised; the address is kept only as a hash on the "
        "suppression list"
    )


# --- queue and manage distributions ------------------------------------------------------------------------


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--to",
    "audiences",
    multiple=True,
    required=True,
    metavar="AUDIENCE",
    help="Audience from config.yaml (repeat for several).",
)
@click.option(
    "--at",
    "at",
    metavar="WHEN",
    help="'now', ISO time with offset, or local time (default: the embargo or date, or now).",
)
@click.option("--tz", "tz", metavar="ZONE", help="Time zone for a local --at (default: config timezone).")
@click.option(
    "--preview",
    is_flag=True,
    help="An embargoed preview: before the embargo (default: now), only to the audience's contacts marked "
    "embargo_trusted, with the embargo in the subject and a banner.",
)
@pass_state
def queue(state: State, file: Path, audiences: tuple[str, ...], at: str | None, tz: str | None, preview: bool) -> None:
    """Parse, store and schedule a distribution of one release. Prints the distribution id."""
    rt = state.runtime
    zone, zone_name = zone_or_default(tz, rt.settings)
    release = parse_release(file, zone)
    now = rt.clock()
    when = parse_when(at, zone, now) if at else (now if preview else default_due(release, zone, now))
    dist_id, _ = queue_release(rt.store, rt.settings, release, audiences, when, zone_name, preview=preview)
    assert dist_id is not None
    count = manage.recipient_count(rt.store, rt.settings, audiences, preview)
    what = "an embargoed preview of " if preview else ""
    err.print(
        f"queued {what}{release.title!r} to {', '.join(audiences)} ({count} contacts) for "
        f"{when.astimezone(zone):%Y-%m-%d %H:%M %Z}",
        highlight=False,
    )
    click.echo(dist_id)


@cli.command()
@click.argument("source", metavar="URL_OR_FILE")
@click.option(
    "--queue-to",
    "audiences",
    multiple=True,
    metavar="AUDIENCE",
    help="Queue each new entry to this audience from config.yaml (repeatable). Without it, entries are only stored.",
)
@click.option(
    "--max-age",
    "max_age_days",
    type=click.IntRange(min=0),
    default=7,
    show_default=True,
    metavar="DAYS",
    help="With --queue-to: entries published longer ago than this are stored but not queued (0: no limit).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@pass_state
def ingest(state: State, source: str, audiences: tuple[str, ...], max_age_days: int, as_json: bool) -> None:
    """Read a partner's RSS or Atom feed (a URL or a file) and store each new entry as a release.

    URLs are fetched with the ETag and Last-Modified of the previous fetch, and entries already seen are
    skipped, so running it again adds nothing new."""
    rt = state.runtime
    max_age = timedelta(days=max_age_days) if max_age_days else None
    report = ingest_feed(rt.store, rt.settings, source, rt.clock(), audiences, max_age)
    if as_json:
        click.echo(json.dumps(_ingest_json(report), ensure_ascii=False, indent=2))
        return
    if report.not_modified:
        console.print(f"{escape(source)}: not modified since the last fetch; nothing new", highlight=False)
        return
    table = Table("state", "published", "title", "release", "queued", "note", title=report.title or source)
    table.title_justify = "left"
    for entry in report.entries:
        table.add_row(
            f"[{INGEST_STYLE.get(entry.state, '')}]{entry.state}[/]",
            f"{entry.published.astimezone(rt.settings.zone):%Y-%m-%d %H:%M %Z}" if entry.published else "—",
            escape(entry.title[:80]) or "—",
            str(entry.release_id or "—"),
            str(entry.distribution_id or "—"),
            escape((entry.note or "")[:100]),
        )
    console.print(table)
    for problem in report.problems:
        err.print(f"[yellow]problem:[/] {escape(problem)}", highlight=False)
    counts = ", ".join(f"{report.count(s)} {s}" for s in ("new", "updated", "seen", "old", "failed") if report.count(s))
    console.print(f"{len(report.entries)} entries: {counts or 'none'}; {len(report.queued)} queued", highlight=False)


INGEST_STYLE = {"new": "green", "updated": "cyan", "seen": "dim", "old": "yellow", "failed": "bold red"}


def _ingest_json(report: IngestReport) -> dict[str, Any]:
    return {
        "source": report.source,
        "title": report.title,
        "not_modified": report.not_modified,
        "problems": report.problems,
        "entries": [
            {
                "key": e.key,
                "title": e.title,
                "published": e.published.isoformat() if e.published else None,
                "state": e.state,
                "release_id": e.release_id,
                "distribution_id": e.distribution_id,
                "note": e.note,
            }
            for e in report.entries
        ],
    }


@cli.command("distributions")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in DistributionStatus]),
    help="Only these statuses (repeatable).",
)
@click.option("--after", metavar="WHEN", help="Only those due at or after WHEN (same forms as --at).")
@click.option("--before", metavar="WHEN", help="Only those due at or before WHEN.")
@click.option("--tz", "tz", metavar="ZONE", help="Time zone for local times (default: config timezone).")
@pass_state
def distributions_cmd(
    state: State, statuses: tuple[str, ...], after: str | None, before: str | None, tz: str | None
) -> None:
    """A table of distributions with status, audience, due time and delivery counts; held ones in red."""
    rt = state.runtime
    wanted = [DistributionStatus(s) for s in statuses] or None
    zone, _ = zone_or_default(tz, rt.settings)
    now = rt.clock()
    rows = rt.store.distributions(
        wanted,
        due_before=parse_when(before, zone, now) if before else None,
        due_after=parse_when(after, zone, now) if after else None,
    )
    table = Table(
        "id",
        "status",
        "release",
        "audiences",
        "due",
        "recipients",
        "accepted",
        "failed",
        "in doubt",
        "pending",
        title=f"{len(rows)} distributions",
        title_justify="left",
    )
    for d in rows:
        pending = sum(d.counts.get(s.value, 0) for s in OPEN_STATUSES)
        table.add_row(
            str(d.id),
            f"[{STATUS_STYLE.get(d.status.value, '')}]{d.status.value}[/]",
            d.release_slug,
            ", ".join(d.audiences),
            f"{d.due_at.astimezone(ZoneInfo(d.timezone)):%Y-%m-%d %H:%M %Z}",
            str(d.total),
            str(d.counts.get("accepted", 0)),
            str(d.counts.get("failed", 0)),
            str(d.counts.get("in_doubt", 0)),
            str(pending),
        )
    console.print(table)


@cli.command("digests")
@pass_state
def digests_cmd(state: State) -> None:
    """The recurring digests in config.yaml: when each goes next, to whom, and what its last periods did."""
    rt = state.runtime
    table = Table("name", "cron", "zone", "to", "next", "last periods", title="digests", title_justify="left")
    now = rt.clock()
    for digest in rt.settings.digests:
        zone = digest.timezone or rt.settings.timezone
        upcoming = next_fire(digest, rt.settings, now)
        history = [
            f"{_local(end, zone)}: " + (f"{count} release(s), distribution {dist}" if dist else "skipped, nothing new")
            for end, count, dist in rt.store.digest_history(digest.name, limit=3)
        ]
        table.add_row(
            digest.name,
            digest.cron,
            zone,
            ", ".join(digest.to),
            _local(upcoming, zone) if upcoming else "—",
            "\n".join(history) or "none yet",
        )
    if not rt.settings.digests:
        console.print("No digests in config.yaml (see README, 'Recurring digests').")
        return
    console.print(table)


@cli.command()
@click.argument("distribution_id", metavar="ID", type=int)
@pass_state
def cancel(state: State, distribution_id: int) -> None:
    """Cancel a distribution that has not finished; recipients not yet sent are never sent."""
    rt = state.runtime
    stopped = manage.cancel(rt.store, distribution_id)
    console.print(f"distribution {distribution_id} cancelled; {stopped} recipients will not be sent")


@cli.command()
@click.argument("distribution_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def show(state: State, distribution_id: int, as_json: bool) -> None:
    """Everything about one distribution: release, audiences, time (in its zone and UTC), embargo, status,
    recipients by delivery status, and what a person may do next."""
    rt = state.runtime
    dist = rt.store.distribution(distribution_id)
    release = rt.store.release(dist.release_id).release
    zone = dist.timezone
    actions = {
        DistributionStatus.SCHEDULED: "reschedule, hold or cancel it",
        DistributionStatus.HELD: "release (send now), reschedule or cancel it",
        DistributionStatus.PAUSED: "release it to resume (--retry-failed to retry failures), or cancel it",
        DistributionStatus.SENDING: "hold (pause) or cancel it",
        DistributionStatus.PARTIAL: "resolve deliveries in doubt; release --retry-failed to retry failures",
    }
    facts = {
        "distribution": dist.id,
        "release": release.title,
        "slug": dist.release_slug,
        "status": dist.status.value,
        "audiences": list(dist.audiences),
        "due": _local(dist.due_at, zone),
        "due_utc": dist.due_at.isoformat(),
        "embargo": _local(release.embargo, zone) if release.embargo else None,
        "recipients": dist.total,
        "deliveries": dict(dist.counts),
        "note": dist.note,
        "next": actions.get(dist.status),
    }
    if as_json:
        click.echo(json.dumps(facts))
        return
    table = Table("", "", title=f"Distribution {dist.id}", title_justify="left", show_header=False)
    for key, value in facts.items():
        if key in ("distribution", "deliveries") or value in (None, []):
            continue
        text = ", ".join(value) if isinstance(value, list) else str(value)
        text = f"[{STATUS_STYLE.get(text, '')}]{text}[/]" if key == "status" else escape(text)
        table.add_row(key.replace("_", " "), text)
    for status, count in sorted(dist.counts.items()):
        table.add_row(f"  {status}", str(count))
    console.print(table)


@cli.command()
@click.argument("distribution_id", metavar="ID", type=int)
@click.option("--at", "at", metavar="WHEN", required=True, help="'now', ISO time with offset, or local time.")
@click.option("--tz", "tz", metavar="ZONE", help="Time zone for a local --at (default: the distribution's).")
@pass_state
def reschedule(state: State, distribution_id: int, at: str, tz: str | None) -> None:
    """Move a distribution that has not started (scheduled or held) to another time; never before the
    release's embargo. The time is shown back in the distribution's zone."""
    rt = state.runtime
    dist = rt.store.distribution(distribution_id)
    zone, zone_name = zone_or_default(tz or dist.timezone, rt.settings)
    when = parse_when(at, zone, rt.clock())
    manage.reschedule(rt.store, distribution_id, when, zone_name)
    console.print(f"distribution {distribution_id} rescheduled for {_local(when, zone_name)}")


@cli.command()
@click.argument("distribution_id", metavar="ID", type=int)
@pass_state
def hold(state: State, distribution_id: int) -> None:
    """Stop a distribution without cancelling it: a scheduled one is held (not sent at its time), a sending
    one is paused before its next batch. `pipeline release ID` lets it go on."""
    done = manage.hold(state.runtime.store, distribution_id)
    console.print(f"distribution {distribution_id} {done}; `pipeline release {distribution_id}` lets it go on")


@cli.command("release")
@click.argument("distribution_id", metavar="ID", type=int)
@click.option(
    "--retry-failed",
    is_flag=True,
    help="Also queue its failed deliveries again (once the cause, such as a revoked API key, is fixed).",
)
@pass_state
def release_cmd(state: State, distribution_id: int, retry_failed: bool) -> None:
    """Let a held or paused distribution go on: a paused one resumes where it stopped, a held one (found too
    late to send unattended) becomes due now. The next `pipeline run` (or the running worker) sends it.
    With --retry-failed a finished `partial` one can be reopened for its failed recipients."""
    rt = state.runtime
    status = manage.release(rt.store, distribution_id, rt.clock(), retry_failed=retry_failed)
    console.print(f"distribution {distribution_id} released: {status.value}")


@cli.command()
@click.argument("distribution_id", metavar="ID", type=int)
@click.option("--sent", "decision", flag_value="sent", help="They did go out: mark them accepted, never resend.")
@click.option("--resend", "decision", flag_value="resend", help="They did not go out: send them on the next run.")
@click.option("--address", "addresses", multiple=True, metavar="EMAIL", help="Only this address (repeatable).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def resolve(state: State, distribution_id: int, decision: str | None, addresses: tuple[str, ...], yes: bool) -> None:
    """List the deliveries of distribution ID whose outcome is unknown, and settle them.

    A delivery is in doubt when the provider may have accepted it but never said so (the connection dropped
    or timed out after the request went out). It is never resent automatically. Check the provider's
    activity log, then say --sent (they went out) or --resend (they did not; the next run sends them).
    Without either flag the command only lists them."""
    rt = state.runtime
    doubtful = rt.store.in_doubt(distribution_id, addresses)
    if not doubtful:
        console.print(
            f"distribution {distribution_id}: no delivery in doubt" + (" for those addresses" if addresses else "")
        )
        return
    table = Table("delivery", "address", "since", "why", title=f"{len(doubtful)} in doubt", title_justify="left")
    for row in doubtful:
        table.add_row(
            str(row["id"]),
            escape(row["address"]),
            _local(row["updated_at"], rt.settings.timezone),
            escape(row["error"] or ""),
        )
    console.print(table)
    if decision is None:
        console.print(f"Settle them with: pipeline resolve {distribution_id} --sent  (or --resend)")
        return
    verb = "mark as sent" if decision == "sent" else "send again"
    if not yes and sys.stdin.isatty():
        click.confirm(f"{verb.capitalize()} these {len(doubtful)} deliveries?", abort=True)
    moved = rt.store.resolve_in_doubt([row["id"] for row in doubtful], sent=decision == "sent", now=rt.clock())
    outcome = "marked as sent" if decision == "sent" else "back in the queue; the next `pipeline run` sends them"
    console.print(f"{moved} deliveries {outcome}")


@cli.command()
@click.argument("distribution_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def report(state: State, distribution_id: int, as_json: bool) -> None:
    """Delivery counts of one distribution by status, then what the provider reported (delivered, bounced,
    opened, clicked, complained, unsubscribed) with rates, and a warning when complaints near 0.3%."""
    rt = state.runtime
    dist = rt.store.distribution(distribution_id)
    counts = {
        s.value: 0
        for s in (
            DeliveryStatus.ACCEPTED,
            DeliveryStatus.FAILED,
            DeliveryStatus.IN_DOUBT,
            DeliveryStatus.PENDING,
        )
    } | dict(dist.counts)
    events = rt.store.event_counts(distribution_id)
    engagement = {
        "delivered": events.get("delivered", 0),
        "bounced": events.get("bounced", 0),
        "dropped": events.get("dropped", 0),
        "opened": events.get("opened", 0),
        "clicked": events.get("clicked", 0),
        "complained": events.get("complained", 0),
        "unsubscribed": events.get("unsubscribed", 0),
    }
    sent = sum(n for status, n in dist.counts.items() if DeliveryStatus(status) in STATUS_RANK)  # accepted or on
    base = {"delivered": sent, "bounced": sent, "dropped": sent}
    rates = {k: _rate(v, base.get(k, engagement["delivered"])) for k, v in engagement.items()}
    complaint_rate = _rate(engagement["complained"], engagement["delivered"])
    if as_json:
        click.echo(
            json.dumps(
                {
                    "distribution": dist.id,
                    "status": dist.status.value,
                    "counts": counts,
                    "engagement": engagement,
                    "rates": rates,
                }
            )
        )
        return
    table = Table(
        "status",
        "deliveries",
        title=f"Distribution {dist.id} · {dist.release_slug} · {dist.status.value}",
        title_justify="left",
    )
    for key, value in counts.items():
        table.add_row(key, str(value))
    table.add_row("[bold]total[/]", f"[bold]{dist.total}[/]")
    console.print(table)
    feedback = Table("reported by the provider", "recipients", "rate", title_justify="left")
    for key, value in engagement.items():
        rate = rates[key]
        feedback.add_row(key, str(value), "" if rate is None else f"{rate:.1%}")
    console.print(feedback)
    console.print("[dim]delivered, bounced and dropped are rates of those sent; the rest of those delivered[/]")
    if complaint_rate is not None and complaint_rate >= COMPLAINT_WARNING:
        verb = "is over" if complaint_rate >= COMPLAINT_CEILING else "nears"
        err.print(
            f"[bold yellow]warning:[/] complaint rate {complaint_rate:.1%} {verb} the 0.3% ceiling Gmail and Yahoo "
            "enforce; review this audience before the next send",
            highlight=False,
        )
    if dist.note:
        console.print(f"note: {escape(dist.note)}")


COMPLAINT_WARNING = 0.001  # Gmail's guidance: stay under 0.1%
COMPLAINT_CEILING = 0.003  # never reach 0.3%


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# --- run -------------------------------------------------------------------------------------------------


@contextmanager
def _progress() -> Iterator[Callable[[int], Callable[[int, int], None]]]:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    ) as bar:

        def factory(dist_id: int) -> Callable[[int, int], None]:
            task = bar.add_task(f"distribution {dist_id}", total=None)

            def update(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            return update

        yield factory


@cli.command()
@click.option("--once", is_flag=True, help="Do what is due now, publish, and exit.")
@pass_state
def run(state: State, once: bool) -> None:
    """The main job: import contacts, parse and queue releases/, send what is due, publish the newsroom.

    Without --once it keeps running as the scheduler and sends each distribution at its time."""
    rt = state.runtime
    imported = _import_configured_contacts(rt)
    with _progress() as progress:
        worker = Worker(rt, progress)
        if once:
            _summary(rt, worker.sweep(), imported)
            return
        signal.signal(signal.SIGTERM, lambda *_: worker.stop())
        err.print("scheduler running; Ctrl-C to stop", highlight=False)
        try:
            worker.run_forever(
                on_start=lambda first: _summary(rt, first, imported),
                on_standby=lambda holder: err.print(
                    f"standing by: {holder} is scheduling; this process takes over if it stops", highlight=False
                ),
            )
        except KeyboardInterrupt:
            worker.stop()


def _import_configured_contacts(rt: Runtime) -> tuple[int, int]:
    new = updated = 0
    for source in rt.settings.contacts.sources:
        found = read_contacts(rt.settings.resolve(source), rt.settings.contacts.check_deliverability)
        report_rejected(source, found.rejected)
        n, u, _ = rt.store.save_contacts(found.contacts)
        new, updated = new + n, updated + u
    return new, updated


def _summary(rt: Runtime, sweep: SweepReport, imported: tuple[int, int]) -> None:
    intake = sweep.intake
    for failure in [*(intake.failed if intake else []), *sweep.errors]:
        error(failure)
    sent = [r for r in sweep.dispatched if r.accepted or r.failed or r.in_doubt]
    accepted = sum(r.accepted for r in sweep.dispatched)
    table = Table("", "", title="pipeline run", title_justify="left", show_header=False)
    if intake:
        table.add_row(
            "releases parsed",
            f"{intake.files} ({intake.new} new, {intake.updated} updated, "
            f"{intake.unchanged} unchanged, {len(intake.failed)} failed, {intake.problems} problems)",
        )
        table.add_row(
            "distributions queued",
            str(len(intake.queued)) + (f" ({intake.rescheduled} rescheduled)" if intake.rescheduled else ""),
        )
    if sweep.feeds:
        new = sum(1 for f in sweep.feeds for e in f.entries if e.state == "new")
        queued = sum(1 for f in sweep.feeds for e in f.entries if e.distribution_id is not None)
        table.add_row("partner feeds", f"{len(sweep.feeds)} checked, {new} new entries, {queued} queued")
    if sweep.embargoes_lifted:
        table.add_row("embargoes lifted", f"{len(sweep.embargoes_lifted)} release(s) now public")
    for digest in sweep.digests:
        table.add_row("digest", digest.describe())
    table.add_row("contacts imported", f"{imported[0]} new, {imported[1]} updated")
    table.add_row("distributions sent", str(len(sent)))
    table.add_row(
        "recipients",
        f"{accepted} accepted, {sum(r.failed for r in sweep.dispatched)} failed, "
        f"{sum(r.in_doubt for r in sweep.dispatched)} in doubt",
    )
    waiting = rt.store.distributions([DistributionStatus.SCHEDULED, DistributionStatus.HELD, DistributionStatus.PAUSED])
    table.add_row(
        "waiting",
        ", ".join(f"#{d.id} {d.status.value} for {_local(d.due_at, d.timezone)}" for d in waiting[:5])
        + (" …" if len(waiting) > 5 else "")
        or "none",
    )
    site = sweep.site
    if site:
        table.add_row("feed items", str(site.feed_items))
        table.add_row("newsroom pages", str(site.pages))
    kind = rt.settings.transport
    if kind == "outbox":
        table.add_row("outbox", str(rt.settings.outbox_dir))
    else:
        where = rt.settings.sendgrid.host if kind == "sendgrid" else f"{rt.settings.smtp.host}:{rt.settings.smtp.port}"
        table.add_row("transport", f"{kind} ({where})")
    table.add_row("feed", str(rt.settings.output_dir / "feed.xml"))
    table.add_row("newsroom", str(rt.settings.output_dir / "index.html"))
    console.print(table)
    if intake and not intake.queued and not sent and not intake.rescheduled:
        console.print("Nothing new: no release queued and nothing sent.")


_local = manage.local


@cli.command()
@click.option("--host", help="Address to listen on (default: serve.host, 127.0.0.1).")
@click.option("--port", type=int, help="Port (default: serve.port, 8000).")
@click.option(
    "--worker",
    is_flag=True,
    help="Also run the scheduler in this process (as `pipeline run` does; stands by if another one runs).",
)
@pass_state
def serve(state: State, host: str | None, port: int | None, worker: bool) -> None:
    """Serve the web app until stopped: the staff desk (/desk), one-click unsubscribe links (/unsubscribe/…)
    and the SendGrid event webhook (/webhooks/sendgrid). Put it behind the HTTPS address in site.base_url."""
    import threading

    import uvicorn

    from pipeline.web import create_app

    rt = state.runtime
    app = create_app(rt)
    scheduler = None
    if worker:
        _import_configured_contacts(rt)
        scheduler = Worker(Runtime.open(rt.settings))  # its own connections: the web app's stay for requests
        threading.Thread(target=scheduler.run_forever, name="scheduler", daemon=True).start()
    try:
        uvicorn.run(app, host=host or rt.settings.serve.host, port=port or rt.settings.serve.port, log_level="info")
    finally:
        if scheduler is not None:
            scheduler.stop()


@cli.command("workers")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def workers_cmd(state: State, as_json: bool) -> None:
    """The live `pipeline run` processes (heard from within three `schedule.heartbeat`s): which one schedules,
    what each is sending now, and when each was last heard from."""
    rt = state.runtime
    now, found = rt.store.workers(3 * rt.settings.schedule.heartbeat)  # the database's clock: one for all
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "worker": w.name,
                        "role": w.role,
                        "started": w.started_at.isoformat(),
                        "heartbeat": w.heartbeat_at.isoformat(),
                        "seconds_since_heartbeat": round((now - w.heartbeat_at).total_seconds(), 1),
                        "holding": {str(k): v for k, v in w.holding.items()},
                        "leases": list(w.leases),
                    }
                    for w in found
                ]
            )
        )
        return
    table = Table("worker", "role", "holding", "last heartbeat", "started", title=f"{len(found)} live workers")
    for w in found:
        holding = ", ".join(f"{n} of distribution {d}" for d, n in sorted(w.holding.items())) or "nothing"
        table.add_row(
            w.name,
            w.role + (" (lease)" if w.leases else ""),
            holding,
            f"{(now - w.heartbeat_at).total_seconds():.0f} s ago",
            _local(w.started_at, rt.settings.timezone),
        )
    console.print(table)


# --- database ----------------------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """The database's schema: where it stands, and bringing it up to date (Alembic migrations)."""


def _engine(state: State) -> Any:
    from pipeline.store import create_engine

    return create_engine(state.settings.database_url)


@db.command("status")
@pass_state
def db_status(state: State) -> None:
    """The database's schema revision and the newest this version of pipeline knows. Exits 1 when the
    database needs `pipeline db upgrade`, 2 when it is newer than this code."""
    from pipeline.store import schema_revisions

    engine = _engine(state)
    try:
        current, head, known = schema_revisions(engine)
    finally:
        engine.dispose()
    shown = engine.url.render_as_string(hide_password=True)
    console.print(
        f"{shown}: schema revision {current or 'none (empty database)'}; this code knows up to {head}", soft_wrap=True
    )
    if current == head:
        console.print("up to date")
    elif not known:
        fail(f"the database (revision {current}) is newer than this version of pipeline (up to {head})")
    else:
        console.print("needs `pipeline db upgrade`")
        sys.exit(1)


@db.command("upgrade")
@pass_state
def db_upgrade(state: State) -> None:
    """Bring the database's schema up to date. Safe to run while workers run and from several places at once
    (PostgreSQL: one migrates, the others wait and find it done). Refuses a database newer than the code."""
    from pipeline.store import migrate

    engine = _engine(state)
    try:
        before, after = migrate(engine)
    finally:
        engine.dispose()
    if before == after:
        console.print(f"already up to date (revision {after})")
    else:
        console.print(f"upgraded from revision {before or 'none (empty database)'} to {after}")


# --- desk users --------------------------------------------------------------------------------------------


@cli.group()
def users() -> None:
    """Who may sign in to the web desk (editors draft, preview and queue; approvers also approve and release)."""


def _read_password(confirm: bool = True) -> str:
    """The password from standard input: asked without echo on a terminal, else the first line."""
    if sys.stdin.isatty():
        password = str(click.prompt("Password", hide_input=True, confirmation_prompt=confirm))
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 10:
        fail("the password must have at least 10 characters")
    return password


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["editor", "approver"]), required=True, help="What the user may do.")
@click.option("--email", help="Where their test emails go.")
@pass_state
def users_add(state: State, name: str, role: str, email: str | None) -> None:
    """Add a desk user, or change their role, password and email. The password is read from standard input
    (without echo on a terminal)."""
    from pipeline.desk.auth import hash_password

    if not name.strip() or len(name) > 100:
        fail("a user name needs 1 to 100 characters")
    if email:
        from email_validator import EmailNotValidError, validate_email

        try:
            email = validate_email(email, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            fail(f"--email {email}: {exc}")
    rt = state.runtime
    new = rt.store.save_user(name.strip(), role, hash_password(_read_password()), email, rt.clock())
    err.print(f"{'added' if new else 'updated'} {name} ({role})", highlight=False)


@users.command("list")
@pass_state
def users_list(state: State) -> None:
    """Desk users from the database and from config.yaml."""
    rt = state.runtime
    table = Table("name", "role", "email", "kept in", title="desk users", title_justify="left")
    stored = rt.store.users()
    for user in stored:
        table.add_row(user.name, user.role, user.email or "", "database")
    for configured in rt.settings.users:
        if all(u.name != configured.name for u in stored):
            table.add_row(configured.name, configured.role, configured.email or "", "config.yaml")
    console.print(table)


@users.command("remove")
@click.argument("name")
@pass_state
def users_remove(state: State, name: str) -> None:
    """Remove a desk user from the database; their sessions end at their next request."""
    if not state.runtime.store.remove_user(name):
        fail(f"no desk user {name!r} in the database (users in config.yaml are removed there)")
    err.print(f"removed {name}", highlight=False)


@users.command("hash")
def users_hash() -> None:
    """Print the argon2 hash of a password read from standard input, for `users:` in config.yaml."""
    from pipeline.desk.auth import hash_password

    click.echo(hash_password(_read_password()))


def main() -> None:
    cli(prog_name="pipeline")


__all__ = ["cli", "main"]
