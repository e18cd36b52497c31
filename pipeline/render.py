"""One Jinja2 environment for every output: the project's templates/ over the packaged defaults.

Each variant is rendered once per release. Per-recipient values (the unsubscribe link) are left as markers
that transports substitute, so 100,000 recipients cost one render.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import css_inline
import jinja2
from markupsafe import Markup, escape

from pipeline.config import DigestSettings, Settings
from pipeline.errors import TemplateError
from pipeline.models import Release, slugify
from pipeline.store import DigestIssue

UNSUBSCRIBE_MARK = "%unsubscribe_url%"
NAME_MARK = "%recipient_name%"  # templates may greet the recipient; replaced per recipient, empty if unknown
DIGEST_SUBJECT = "{{ site_title }}: {{ count }} new release{{ '' if count == 1 else 's' }}"
MAX_EMAIL_HTML = 90 * 1024  # bytes after inlining; Gmail clips messages at about 102 KB

_CHROME = {
    "en": {
        "about": "About",
        "contacts": "Media contacts",
        "fls": "Forward-looking statements",
        "unsubscribe": "Unsubscribe",
        "why": "You receive this because you are on the media list of",
        "embargo": "Embargoed until",
        "read_online": "Read online",
        "truncated": "This release is too long for email. Read the full release online:",
        "newsroom": "Newsroom",
        "published": "Published",
        "older": "Older",
        "newer": "Newer",
        "correction": "Correction",
        "updated": "Updated",
    },
    "fr": {
        "about": "À propos de",
        "contacts": "Relations avec les médias",
        "fls": "Énoncés prospectifs",
        "unsubscribe": "Se désabonner",
        "why": "Vous recevez ce message car vous figurez sur la liste médias de",
        "embargo": "Sous embargo jusqu'au",
        "read_online": "Lire en ligne",
        "truncated": "Ce communiqué est trop long pour un courriel. Lisez-le en entier en ligne :",
        "newsroom": "Salle de presse",
        "published": "Publié le",
        "older": "Plus anciens",
        "newer": "Plus récents",
        "correction": "Correctif",
        "updated": "Mis à jour le",
    },
}
_FR_MONTHS = [
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
]


@dataclass(frozen=True, slots=True)
class EmailRendition:
    """An email rendered once for a release; `UNSUBSCRIBE_MARK` stands where each recipient's link goes."""

    subject: str
    html: str
    text: str
    from_address: str
    from_name: str | None
    reply_to: str | None
    unsubscribe_mailto: str | None
    release_slug: str
    categories: tuple[str, ...] = ()


def chrome(language: str | None) -> dict[str, str]:
    return _CHROME.get(language or "en", _CHROME["en"])


def long_date(value: date | datetime | None, language: str | None = "en") -> str:
    if value is None:
        return ""
    if language == "fr":
        return f"{value.day} {_FR_MONTHS[value.month - 1]} {value.year}"
    return f"{value:%B} {value.day}, {value.year}"


def _wrap(text: str, width: int = 72, indent: str = "") -> str:
    return "\n".join(
        textwrap.fill(
            para,
            width=width,
            initial_indent=indent,
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
        )
        for para in str(text).split("\n")
        if para.strip()
    )


_URL = re.compile(r"(?<![\w/])((?:https?://|www\.)[^\s<>\"')]+[^\s<>\"').,;:!?])")


def _linkify(text: str) -> Markup:
    """Escape text and turn bare URLs into links."""
    out, last = [], 0
    for match in _URL.finditer(text):
        out.append(escape(text[last : match.start()]))
        url = match.group(1)
        href = url if url.startswith("http") else "https://" + url
        out.append(Markup('<a href="{}">{}</a>').format(href, url))
        last = match.end()
    out.append(escape(text[last:]))
    return Markup("").join(out)


def _links(texts: list[str]) -> list[str]:
    seen: list[str] = []
    for text in texts:
        for match in _URL.finditer(text):
            if match.group(1) not in seen:
                seen.append(match.group(1))
    return seen


class Renderer:
    """Renders releases with the project's templates; raises TemplateError with the template and line."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        loaders: list[jinja2.BaseLoader] = []
        if settings.templates_dir.is_dir():
            loaders.append(jinja2.FileSystemLoader(settings.templates_dir))
        loaders.append(jinja2.PackageLoader("pipeline", "templates"))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=jinja2.select_autoescape(["html", "xml"], default_for_string=True),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.env.filters.update(
            wrap=_wrap,
            linkify=_linkify,
            long_date=long_date,
            rfc822=format_datetime,
            local=self._local,
            slugify=slugify,
        )
        self.env.globals.update(
            settings=settings,
            organization=settings.organization,
            site=settings.site,
            site_title=settings.site_title,
        )
        self._inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)

    def _local(self, value: datetime, fmt: str = "%Y-%m-%d %H:%M %Z", zone: str | None = None) -> str:
        return value.astimezone(ZoneInfo(zone or self.settings.timezone)).strftime(fmt)

    def render(self, name: str, **context: Any) -> str:
        try:
            return self.env.get_template(name).render(**context)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(exc.filename or name, exc.message or str(exc), exc.lineno) from exc
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(name, f"template not found: {exc.name}") from exc
        except jinja2.UndefinedError as exc:
            raise TemplateError(name, str(exc)) from exc

    def context(self, release: Release, slug: str, published_at: datetime | None = None) -> dict[str, Any]:
        language = release.language if release.language in _CHROME else "en"
        return {
            "release": release,
            "slug": slug,
            "url": self.page_url(slug),
            "t": chrome(language),
            "lang": language,
            "published_at": published_at,
            "summary": summary(release),
            "links": _links([*release.body, *(a.text for a in release.about)]),
            "quoted": quoted_paragraphs(release),
            "images": [m for m in release.media if m.is_image],
            "embargo_notice": None,
            "truncated": False,
        }

    def page_url(self, slug: str) -> str:
        return f"{self.settings.site.base_url}/releases/{slug}/"

    def embargo_notice(self, release: Release) -> str | None:
        """ "EMBARGOED UNTIL 09:00 EST, March 5, 2026" in the configured zone and the release's language."""
        if release.embargo is None:
            return None
        local = release.embargo.astimezone(ZoneInfo(self.settings.timezone))
        if release.language == "fr":
            when = f"{long_date(local, 'fr')} à {local:%H} h {local:%M} ({local:%Z})"
            return f"SOUS EMBARGO JUSQU'AU {when}"
        return f"EMBARGOED UNTIL {local:%H:%M} {local:%Z}, {long_date(local, 'en')}"

    def email(self, release: Release, slug: str, embargoed_preview: bool = False) -> EmailRendition:
        """The email, rendered once. An embargoed preview (sent before the embargo lifts, to trusted
        journalists only) states the embargo in the subject and in a banner."""
        notice = self.embargo_notice(release) if embargoed_preview else None
        context = self.context(release, slug) | {
            "unsubscribe_url": UNSUBSCRIBE_MARK,
            "recipient_name": NAME_MARK,
            "embargo_notice": notice,
        }
        html = self._inliner.inline(self.render("email.html", **context))
        if len(html.encode()) > MAX_EMAIL_HTML:
            html = self._shortened(release, context)
        text = self.render("email.txt", **context)
        sender = self.settings.sender
        subject = subject_line(release)
        return EmailRendition(
            subject=f"{notice}: {subject}" if notice else subject,
            html=html,
            text=text,
            from_address=sender.from_address,
            from_name=sender.name or self.settings.organization.name,
            reply_to=sender.reply_to,
            unsubscribe_mailto=self.settings.unsubscribe.mailto,
            release_slug=slug,
            categories=release.categories,
        )

    def _shortened(self, release: Release, context: dict[str, Any]) -> str:
        """The HTML email of a very long release, cut to the most paragraphs that keep it under the limit
        (Gmail clips at about 102 KB, hiding the unsubscribe link); the rest is one click away online."""
        low, high, best = 0, len(release.body), ""
        while low <= high:
            keep = (low + high) // 2
            cut = replace(release, body=release.body[:keep], about=(), forward_looking_statements=None)
            html = self._inliner.inline(self.render("email.html", **(context | {"release": cut, "truncated": True})))
            if len(html.encode()) <= MAX_EMAIL_HTML:
                best, low = html, keep + 1
            else:
                high = keep - 1
        if not best:
            raise TemplateError("email.html", f"the email stays over {MAX_EMAIL_HTML // 1024} KB even without its body")
        return best

    def digest_context(self, issue: DigestIssue, digest: DigestSettings) -> dict[str, Any]:
        """What digest templates and the subject see: the period, in the digest's zone, and each release listed."""
        items = [
            {
                "release": item.release,
                "slug": item.slug,
                "title": subject_line(item.release),
                "url": self.page_url(item.slug),
                "summary": summary(item.release),
                "published_at": item.published_at,
            }
            for item in issue.items
        ]
        return {
            "digest_name": issue.name,
            "items": items,
            "count": len(items),
            "period_start": issue.period_start,
            "period_end": issue.period_end,
            "zone": digest.timezone or self.settings.timezone,
            "t": chrome("en"),
            "lang": "en",
        }

    def digest_subject(self, issue: DigestIssue, digest: DigestSettings) -> str:
        source = digest.subject or DIGEST_SUBJECT
        try:
            text = self.env.from_string("{% autoescape false %}" + source + "{% endautoescape %}").render(
                **self.digest_context(issue, digest)
            )
        except jinja2.TemplateError as exc:
            raise TemplateError(f"digests {digest.name}: subject", str(exc)) from exc
        return re.sub(r"\s+", " ", text).strip()[:250]

    def digest_email(self, issue: DigestIssue, digest: DigestSettings) -> EmailRendition:
        """A digest email, rendered once for all its recipients, with the digest's own templates."""
        context = self.digest_context(issue, digest) | {
            "subject": self.digest_subject(issue, digest),
            "unsubscribe_url": UNSUBSCRIBE_MARK,
            "recipient_name": NAME_MARK,
        }
        sender = self.settings.sender
        return EmailRendition(
            subject=context["subject"],
            html=self._inliner.inline(self.render(digest.html_template, **context)),
            text=self.render(digest.text_template, **context),
            from_address=sender.from_address,
            from_name=sender.name or self.settings.organization.name,
            reply_to=sender.reply_to,
            unsubscribe_mailto=self.settings.unsubscribe.mailto,
            release_slug=f"digest-{issue.name}-{issue.period_end.astimezone(UTC):%Y%m%dt%H%Mz}",
        )

    def labels(self, language: str | None) -> dict[str, str]:
        return chrome(language)

    def page(self, release: Release, slug: str, published_at: datetime | None, **extra: Any) -> str:
        """The newsroom page; `extra` carries what only the site knows (feeds, JSON-LD, correction time)."""
        defaults: dict[str, Any] = {"feeds": [], "json_ld": None, "updated_at": None}
        return self.render("page.html", **(self.context(release, slug, published_at) | defaults | extra))


def subject_line(release: Release) -> str:
    """The headline (or derived title) on one line: no CR/LF can reach a header."""
    return re.sub(r"\s+", " ", release.title).strip()[:250]


def quoted_paragraphs(release: Release) -> set[int]:
    """Indexes of the body paragraphs that carry a quotation, so templates can set them apart."""
    starts = [q.text[:40] for q in release.quotes]
    return {i for i, paragraph in enumerate(release.body) if any(s and s in paragraph for s in starts)}


def summary(release: Release, limit: int = 300) -> str:
    if release.subheadline:
        return release.subheadline
    first = release.body[0] if release.body else release.title
    return first if len(first) <= limit else first[: limit - 1].rsplit(" ", 1)[0] + "…"


def previewed(renderer: Renderer, rendition: EmailRendition) -> tuple[str, str]:
    """The email's HTML and text as a reader would see them, with a placeholder unsubscribe link and no name."""
    preview_url = f"{renderer.settings.site.base_url}/unsubscribe/preview"

    def fill(part: str) -> str:
        return part.replace(UNSUBSCRIBE_MARK, preview_url).replace(NAME_MARK, "")

    return fill(rendition.html), fill(rendition.text)


def write_preview(
    renderer: Renderer,
    release: Release,
    slug: str,
    rendition: EmailRendition,
    out: Path,
    message_bytes: bytes,
    feed_item: str,
) -> list[Path]:
    """Write every variant of one release into `out` (the `preview` command); `rendition` is its email."""
    out.mkdir(parents=True, exist_ok=True)
    html, text = previewed(renderer, rendition)
    files = {
        "email.html": html,
        "email.txt": text,
        "page.html": renderer.page(release, slug, None),
        "feed-item.xml": feed_item,
    }
    written = []
    for name, content in files.items():
        (out / name).write_text(content, encoding="utf-8")
        written.append(out / name)
    (out / "message.eml").write_bytes(message_bytes)
    written.append(out / "message.eml")
    return written
