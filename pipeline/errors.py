"""The project's own exceptions: every failure a user can act on is one of these.

PipelineError                      base; the CLI prints str(error) and exits with code 2
├── ConfigError(key)               config.yaml missing, unreadable, or a key with a bad value
├── ReleaseParseError(path, line)  a release document that cannot be read or understood
├── ContactImportError(path, line) a contacts file that cannot be imported at all
├── TemplateError(template)        a Jinja2 template that fails to load or render
├── StoreError                     the database refused, or is newer than this code
├── IngestError(source)            a partner feed that cannot be fetched or is not RSS/Atom
├── FeedError                      a feed that would not re-parse cleanly (the old one stays)
├── ScheduleError                  a send time that cannot be honoured (e.g. before the embargo)
├── NotFoundError                  an id or name that does not exist
├── FormError(field)               a web desk form field that cannot be used as given
└── SendError                      a transport failed for a whole batch
    ├── TransientSendError         worth retrying later (rate limit, 5xx, network before a reply)
    └── PermanentSendError         retrying will not help (bad request, auth, rejected address)
"""

from __future__ import annotations

from pathlib import Path


class PipelineError(Exception):
    """Base of every error the project raises on purpose; its message is meant for the user."""


class ConfigError(PipelineError):
    """config.yaml is missing, unreadable or has a bad key or value."""

    def __init__(
        self, message: str, *, path: Path | None = None, key: str | None = None, line: int | None = None
    ) -> None:
        self.path, self.key, self.line, self.detail = path, key, line, message
        where = str(path) if path else "config"
        if line is not None:
            where += f":{line}"
        super().__init__(f"{where}: {f'{key}: ' if key else ''}{message}")


class ReleaseParseError(PipelineError):
    """A release document cannot be read or parsed; names the file and, when known, the line."""

    def __init__(self, path: Path | str, message: str, line: int | None = None) -> None:
        self.path, self.line, self.detail = Path(path), line, message
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


class ContactImportError(PipelineError):
    """A contacts file cannot be imported at all (unreadable, or no email column)."""

    def __init__(self, path: Path | str, message: str, line: int | None = None) -> None:
        self.path, self.line, self.detail = Path(path), line, message
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


class FormError(PipelineError):
    """A web desk form field that cannot be used as given; `field` names it so the page can mark it."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class TemplateError(PipelineError):
    """A template failed to load or render."""

    def __init__(self, template: str, message: str, line: int | None = None) -> None:
        self.template, self.line = template, line
        where = f"{template}:{line}" if line is not None else template
        super().__init__(f"template {where}: {message}")


class StoreError(PipelineError):
    """The database cannot be opened or migrated."""


class IngestError(PipelineError):
    """A partner's feed cannot be fetched, or is not an RSS or Atom feed; names the URL or file."""

    def __init__(self, source: str, message: str) -> None:
        self.source, self.detail = source, message
        super().__init__(f"{source}: {message}")


class FeedError(PipelineError):
    """A generated feed failed its checks and was not written."""


class ScheduleError(PipelineError):
    """A distribution cannot be scheduled or changed as asked."""


class NotFoundError(PipelineError):
    """Something named by the user (a distribution id, an audience) does not exist."""


class SendError(PipelineError):
    """A transport could not hand a batch to the provider."""


class TransientSendError(SendError):
    """The batch may succeed later; `retry_after` is the provider's hint in seconds, if any."""

    def __init__(self, message: str, retry_after: float | None = None, *, rate_limited: bool = False) -> None:
        self.retry_after, self.rate_limited = retry_after, rate_limited
        super().__init__(message)


class PermanentSendError(SendError):
    """The provider refused the batch in a way retrying will not fix."""
