"""config.yaml → typed, validated settings.

Validated once at start-up: an unknown key or a bad value is a ConfigError naming the key and its line.
Relative paths are resolved against the folder holding config.yaml; secrets come only from the environment.
"""

from __future__ import annotations

import os
import re
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
import yaml
from apscheduler.triggers.cron import CronTrigger
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline.errors import ConfigError

DEFAULT_CONFIG = "config.yaml"
CONFIG_ENV = "PIPELINE_CONFIG"

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s)", re.IGNORECASE)
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(value: object) -> timedelta:
    """Seconds as a number, or a duration such as `90s`, `15m`, `2h`, `1d 6h`."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return timedelta(seconds=float(text))
        parts = _DURATION.findall(text)
        if parts and _DURATION.sub("", text).strip() == "":
            return timedelta(seconds=sum(float(n) * _UNIT_SECONDS[u.lower()] for n, u in parts))
    raise ValueError("expected seconds or a duration such as '90s', '15m', '2h', '1d'")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {value!r} (e.g. 'America/Toronto')") from exc
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class OutboxSettings(_Section):
    dir: Path = Path("var/outbox")


class SmtpSettings(_Section):
    host: str = "localhost"
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password_env: str = "SMTP_PASSWORD"  # noqa: S105 - the name of a variable, not a secret
    rate_per_second: float = Field(0, ge=0, description="0 means no limit")
    timeout: float = Field(30, gt=0)
    ca_file: Path | None = None  # a PEM bundle to trust instead of the system's (a relay with a private CA)
    connections: int = Field(2, ge=1, le=20, description="connections sending side by side")


class SendgridSettings(_Section):
    host: str = "https://api.sendgrid.com"  # https://api.eu.sendgrid.com for the EU region
    api_key_env: str = "SENDGRID_API_KEY"
    sandbox: bool = False
    timeout: float = Field(30, gt=0)
    concurrency: int = Field(2, ge=1, le=16, description="requests in flight at once")
    webhook_public_key: str | None = None


class SenderSettings(_Section):
    from_address: str = Field(alias="from")
    name: str | None = None
    reply_to: str | None = None

    @field_validator("from_address", "reply_to")
    @classmethod
    def _valid_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return validate_email(value, check_deliverability=False, test_environment=True).normalized
        except EmailNotValidError as exc:
            raise ValueError(str(exc)) from exc


class OrganizationSettings(_Section):
    name: str
    postal_address: str = Field(min_length=1)
    url: str | None = None


class FeedsSettings(_Section):
    """Which feeds the newsroom publishes: formats, and the per-category and per-language sets."""

    formats: tuple[Literal["rss", "atom", "json"], ...] = ("rss", "atom", "json")
    categories: Literal["all", "none"] | tuple[str, ...] = "all"
    languages: Literal["all", "none"] | tuple[str, ...] = "all"
    websub_hub: str | None = None

    @field_validator("formats")
    @classmethod
    def _some_format(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one of rss, atom, json")
        return value

    @field_validator("websub_hub")
    @classmethod
    def _hub_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value


class SiteSettings(_Section):
    base_url: str = "http://localhost:8000"
    output_dir: Path = Path("public")
    title: str | None = None
    description: str = "Press releases"
    feed_items: int = Field(50, ge=1)
    page_size: int = Field(20, ge=1)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        if re.search(r"[\s&<>\"'?#]", value):
            # Links are built by appending paths; they go into HTML attributes and mail headers unescaped.
            raise ValueError("must be a plain site address, without spaces, quotes, <, >, &, ? or #")
        return value.rstrip("/")


class PartnerFeed(_Section):
    """A partner's RSS/Atom feed that `pipeline run` polls (every `every`) and whose new entries it queues."""

    url: str
    every: Duration = timedelta(minutes=15)
    queue_to: tuple[str, ...] = ()
    max_age_days: int = Field(7, ge=0, description="older entries are stored, not queued; 0: no limit")


class DigestSettings(_Section):
    """A recurring digest: at each time `cron` names (in `timezone`), one email to the audiences in `to` listing
    the releases published since the previous digest of the same name; skipped when there is nothing new."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$", description="lower-case letters, digits and -")
    cron: str = Field(description="five fields: minute hour day-of-month month day-of-week, e.g. '0 8 * * mon'")
    timezone: str | None = None  # default: the top-level timezone
    to: tuple[str, ...] = ("all",)
    subject: str | None = None  # a Jinja2 expression template; default in render.DIGEST_SUBJECT
    html_template: str = "digest.html"
    text_template: str = "digest.txt"

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"not a crontab expression ({exc}); e.g. '0 8 * * mon' for Mondays at 08:00") from exc
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else _known_zone(value)

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                jinja2.Environment(autoescape=False).parse(value)  # noqa: S701 - an email subject, not HTML
            except jinja2.TemplateSyntaxError as exc:
                raise ValueError(f"not a valid template: {exc.message}") from exc
        return value


class ReleasesSettings(_Section):
    dir: Path = Path("releases")
    default_audiences: tuple[str, ...] = ("all",)


class ContactsSettings(_Section):
    sources: tuple[Path, ...] = ()
    # Also ask DNS whether each address's domain takes mail (slow, needs the network; off by default).
    check_deliverability: bool = False


class AudienceSettings(_Section):
    description: str | None = None
    beats: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    outlets: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    embargo_trusted: bool | None = None  # true: only contacts who may receive embargoed previews
    addresses: tuple[str, ...] = ()  # a static list: only these contacts

    @field_validator("addresses")
    @classmethod
    def _lower(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(a.strip().lower() for a in value)


class ScheduleSettings(_Section):
    max_lateness: Duration = timedelta(hours=2)
    sweep_interval: Duration = timedelta(minutes=1)
    # The scheduling process renews its lease every third of this; a standby takes over once it runs out.
    leader_lease: Duration = timedelta(seconds=60)
    # Every `pipeline run` records that it is alive this often; `pipeline workers` lists those heard from
    # within three of these.
    heartbeat: Duration = timedelta(seconds=10)


class SendSettings(_Section):
    batch_size: int = Field(1000, ge=1, le=1000)
    lease: Duration = timedelta(minutes=5)
    max_retries: int = Field(5, ge=0)
    backoff: Duration = timedelta(seconds=2)
    pause_after_failures: int = Field(50, ge=1)


class UnsubscribeSettings(_Section):
    secret_env: str = "PIPELINE_SECRET"  # noqa: S105 - the name of a variable, not a secret
    # Retired secrets (comma-separated) that still verify links already mailed; keep them ≥ 60 days (CASL).
    previous_secrets_env: str = "PIPELINE_PREVIOUS_SECRETS"
    mailto: str | None = None


class ServeSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)


class DeskUser(_Section):
    """A web desk user kept in config.yaml (`pipeline users add` keeps them in the database instead)."""

    name: str = Field(min_length=1, max_length=100)
    role: Literal["editor", "approver"] = "editor"
    password_hash: str = Field(pattern=r"^\$argon2", description="from `pipeline users hash`")
    email: str | None = None


class DeskSettings(_Section):
    # A distribution queued on the desk waits (held) until an approver other than the one who queued it
    # approves it; everything anyone does there is in the audit trail either way.
    require_approval: bool = False
    session_lifetime: Duration = timedelta(hours=12)
    secure_cookies: bool = False  # set true when the desk is served over HTTPS (it should be)


class TrackingSettings(_Section):
    soft_bounce_limit: int = Field(3, ge=1, description="soft bounces before an address is suppressed")
    webhook_max_age: Duration = timedelta(minutes=15)  # older signed webhook posts are refused (replay)


class DatabasePoolSettings(_Section):
    """Connections kept per process (PostgreSQL; SQLite opens what it needs), and how long a process keeps
    trying when the database goes away (a restart, a failover, a dropped connection) before it gives up."""

    size: int = Field(5, ge=1, le=100)
    max_overflow: int = Field(10, ge=0, le=200)
    reconnect_for: Duration = timedelta(minutes=2)


class Settings(_Section):
    """The whole of config.yaml. `root` is the folder relative paths are resolved against."""

    root: Path = Path()
    database: str = "sqlite:///var/pipeline.db"
    database_pool: DatabasePoolSettings = DatabasePoolSettings()
    state_dir: Path = Path("var")
    timezone: str = "UTC"
    transport: Literal["outbox", "smtp", "sendgrid"] = "outbox"
    outbox: OutboxSettings = OutboxSettings()
    smtp: SmtpSettings = SmtpSettings()
    sendgrid: SendgridSettings = SendgridSettings()
    sender: SenderSettings
    organization: OrganizationSettings
    site: SiteSettings = SiteSettings()
    feeds: FeedsSettings = FeedsSettings()
    releases: ReleasesSettings = ReleasesSettings()
    contacts: ContactsSettings = ContactsSettings()
    audiences: dict[str, AudienceSettings] = Field(default_factory=lambda: {"all": AudienceSettings()})
    schedule: ScheduleSettings = ScheduleSettings()
    send: SendSettings = SendSettings()
    unsubscribe: UnsubscribeSettings = UnsubscribeSettings()
    serve: ServeSettings = ServeSettings()
    desk: DeskSettings = DeskSettings()
    users: tuple[DeskUser, ...] = ()
    partner_feeds: tuple[PartnerFeed, ...] = ()
    digests: tuple[DigestSettings, ...] = ()
    tracking: TrackingSettings = TrackingSettings()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _known_zone(value)

    @model_validator(mode="after")
    def _known_audiences(self) -> Settings:
        """Audiences named by digests and partner feeds must exist, or they would fail only when due."""
        named = [(f"digests.{i}.to", d.to) for i, d in enumerate(self.digests)]
        named += [(f"partner_feeds.{i}.queue_to", f.queue_to) for i, f in enumerate(self.partner_feeds)]
        for key, names in named:
            unknown = [n for n in names if n not in self.audiences]
            if unknown:
                raise ValueError(
                    f"{key}: unknown audience {', '.join(map(repr, unknown))} (known: {', '.join(self.audiences)})"
                )
        seen = [d.name for d in self.digests]
        if len(set(seen)) != len(seen):
            raise ValueError("digests: two digests have the same name")
        return self

    def digest(self, name: str) -> DigestSettings | None:
        return next((d for d in self.digests if d.name == name), None)

    @field_validator("database")
    @classmethod
    def _sqlalchemy_url(cls, value: str) -> str:
        if not re.match(r"^[a-z][a-z0-9+]*://", value):
            raise ValueError("must be a SQLAlchemy URL such as 'sqlite:///var/pipeline.db'")
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def database_url(self) -> str:
        """The database URL with a relative SQLite path resolved against the config folder."""
        prefix = "sqlite:///"
        if self.database.startswith(prefix) and not self.database.startswith(prefix + "/"):
            rest = self.database[len(prefix) :]
            if rest and rest != ":memory:":
                return prefix + str(self.resolve(Path(rest)))
        return self.database

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else self.root / path

    @property
    def outbox_dir(self) -> Path:
        return self.resolve(self.outbox.dir)

    @property
    def output_dir(self) -> Path:
        return self.resolve(self.site.output_dir)

    @property
    def releases_dir(self) -> Path:
        return self.resolve(self.releases.dir)

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def site_title(self) -> str:
        return self.site.title or f"{self.organization.name} newsroom"

    def unsubscribe_secret(self) -> str:
        """The signing secret: from the environment, else one generated once and kept under state_dir."""
        from_env = os.environ.get(self.unsubscribe.secret_env)
        if from_env:
            return from_env
        path = self.resolve(self.state_dir) / "secret.key"
        if path.exists():
            return path.read_text(encoding="utf-8").strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(value + "\n")
        return value

    def unsubscribe_secrets(self) -> list[str]:
        """Every secret that verifies unsubscribe links, oldest first; the last one signs new links."""
        retired = os.environ.get(self.unsubscribe.previous_secrets_env, "")
        return [s.strip() for s in retired.split(",") if s.strip()] + [self.unsubscribe_secret()]

    def sendgrid_api_key(self) -> str:
        """The SendGrid API key, from the environment variable named by `sendgrid.api_key_env`."""
        key = os.environ.get(self.sendgrid.api_key_env, "").strip()
        if not key:
            raise ConfigError(
                f"the sendgrid transport needs an API key with Mail Send permission in the environment variable "
                f"{self.sendgrid.api_key_env}",
                key="sendgrid.api_key_env",
            )
        return key

    def smtp_password(self) -> str | None:
        """The relay password from the environment variable named by `smtp.password_env`, when a login is set."""
        if not self.smtp.username:
            return None
        password = os.environ.get(self.smtp.password_env)
        if password is None:
            raise ConfigError(
                f"smtp.username is set, so the password must be in the environment variable {self.smtp.password_env}",
                key="smtp.password_env",
            )
        return password


def config_path(explicit: str | os.PathLike[str] | None) -> Path:
    """--config, else $PIPELINE_CONFIG, else ./config.yaml."""
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_settings(path: Path) -> Settings:
    """Read and validate config.yaml. Raises ConfigError naming the file, line and key."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found (use --config PATH or set PIPELINE_CONFIG)", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", path=path) from exc
    try:
        data = yaml.safe_load(text)
        tree = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"not valid YAML: {problem}", path=path, line=line) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of keys at the top level", path=path)
    if "root" in data:
        raise ConfigError("unknown key", path=path, key="root", line=_line_of(tree, ("root",)))
    try:
        return Settings.model_validate({**data, "root": path.resolve().parent})
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(str(p) for p in error["loc"])
        key = ".".join(loc) or "(top level)"
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        if error["type"] == "missing":
            message = "required key is missing"
        message = re.sub(r"^Value error, ", "", message)
        named = re.match(r"^([a-z_]+(?:\.[\w-]+)+): (.*)$", message, re.DOTALL) if not loc else None
        if named:  # a check across keys names the key it is about
            key, message = named.group(1), named.group(2)
            loc = tuple(key.split("."))
        raise ConfigError(message, path=path, key=key, line=_line_of(tree, loc)) from exc


def _line_of(node: yaml.Node | None, loc: tuple[str, ...]) -> int | None:
    """The 1-based line of the deepest key of `loc` found in the YAML node tree."""
    line = None
    for part in loc:
        if isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
            continue
        if not isinstance(node, yaml.MappingNode):
            break
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == part:
                line, node = key_node.start_mark.line + 1, value_node
                break
        else:
            break
    return line
