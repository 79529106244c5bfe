"""Templates rendered with Jinja2's sandbox: no code execution (no attribute starting with an
underscore, no unsafe callables), every undefined name an error, HTML autoescaped.

A template is checked when saved (:func:`check`): it must parse, render against a sample of its
event's context, and an HTML body may not carry active content (scripts, event handlers,
``javascript:`` links): email clients should not run them anyway, but oms does not store them.
Values come from orders (names, cities, carriers typed by connectors): in HTML they are
escaped, so a customer named ``<script>`` is shown, never run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_TEMPLATE_CHARS = 65_536
MAX_SUBJECT_CHARS = 250
MAX_SMS_CHARS = 1_600  # ten concatenated SMS segments


MAX_OUTPUT_CHARS = 200_000
"""Most characters one part of a message may render to (checked as it is produced)."""
MAX_SIZE = 10_000
"""Largest repeat count, padding width or exponent a template may use: ``{{ 'x' * 10**9 }}``
or ``{{ 'x'|center(10**9) }}`` would otherwise make the worker allocate gigabytes."""

_BIG_ATTRIBUTES = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs", "format"})
_BIG_ATTRIBUTES |= {"format_map"}
_BIG_FILTERS = ("center", "indent", "format", "wordwrap", "filesizeformat")


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, with the size of what a template can build bounded as well."""

    # ``range`` in a template: a few loops, not a way to spin the worker
    MAX_RANGE = 1_000
    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(autoescape=autoescape, undefined=StrictUndefined, auto_reload=False)
        for name in _BIG_FILTERS:
            self.filters.pop(name, None)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "%":
            raise SecurityError("the % operator is not available in message templates")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
                    if len(seq) * n > MAX_OUTPUT_CHARS:
                        raise SecurityError("a repeated string or list this long is refused")
        numbers = [v for v in (left, right) if isinstance(v, int)]
        if any(abs(v) > MAX_SIZE for v in numbers) and (
            operator == "**" or any(isinstance(v, (str, list, tuple)) for v in (left, right))
        ):
            raise SecurityError(f"repeat counts and exponents above {MAX_SIZE} are refused")
        if operator == "**" and isinstance(left, int) and abs(left) > MAX_SIZE:
            raise SecurityError(f"powers of numbers above {MAX_SIZE} are refused")
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> None:
        """No ``str.format`` / ``format_map`` (their widths are unbounded): refused below."""
        return None

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and attr in _BIG_ATTRIBUTES:
            return False
        return bool(super().is_safe_attribute(obj, attr, value))


_HTML = _Sandbox(autoescape=True)
_TEXT = _Sandbox(autoescape=False)

_ACTIVE_HTML = re.compile(
    r"<\s*(script|iframe|object|embed|form|base|link)\b|<\s*meta[^>]*http-equiv"
    r"|\son[a-z]+\s*=|javascript\s*:",
    re.IGNORECASE,
)


class TemplateRefused(ValueError):
    """A template that cannot be saved or rendered (syntax, unknown name, unsafe access)."""

    def __init__(self, part: str, reason: str) -> None:
        super().__init__(f"{part}: {reason}")
        self.part = part
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TemplateSource:
    subject: str | None
    body_text: str
    body_html: str | None


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str | None
    body_text: str
    body_html: str | None


def _render(env: _Sandbox, part: str, source: str, context: dict[str, Any]) -> str:
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateRefused(part, f"longer than {MAX_TEMPLATE_CHARS} characters")
    try:
        out: list[str] = []
        size = 0
        for chunk in env.from_string(source).generate(context):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateRefused(part, f"renders to more than {MAX_OUTPUT_CHARS} characters")
            out.append(chunk)
        return "".join(out)
    except TemplateRefused:
        raise
    except TemplateError as exc:  # syntax, undefined names, SecurityError (a TemplateError)
        raise TemplateRefused(part, f"{type(exc).__name__}: {exc}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError, RecursionError) as exc:
        raise TemplateRefused(part, f"{type(exc).__name__}: {exc}") from None


def render(source: TemplateSource, context: dict[str, Any], *, channel: str) -> Rendered:
    """Render one template (subject and text as text, the HTML body escaped)."""
    subject = None
    if source.subject is not None:
        subject = " ".join(_render(_TEXT, "subject", source.subject, context).split())
        subject = subject[:MAX_SUBJECT_CHARS]
    text = _render(_TEXT, "body_text", source.body_text, context).strip()
    if channel == "sms":
        text = text[:MAX_SMS_CHARS]
    html = None
    if source.body_html is not None:
        html_context = {**context, "subject": subject or ""}
        html = _render(_HTML, "body_html", source.body_html, html_context)
    return Rendered(subject=subject, body_text=text, body_html=html)


def check(source: TemplateSource, sample: dict[str, Any], *, channel: str) -> Rendered:
    """Refuse a template that would not render safely; return its sample rendering."""
    if channel == "email" and not (source.subject or "").strip():
        raise TemplateRefused("subject", "an email template needs a subject")
    if channel == "sms" and (source.subject is not None or source.body_html is not None):
        raise TemplateRefused("body_html", "an SMS template has a text body only")
    if source.body_html is not None and _ACTIVE_HTML.search(source.body_html):
        raise TemplateRefused(
            "body_html",
            "active content (script, iframe, object, embed, form, base, link, meta "
            "refresh, on* handlers, javascript: links) is not allowed in a message",
        )
    return render(source, sample, channel=channel)
