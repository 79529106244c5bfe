"""Templates rendered with Jinja2's sandbox: no code execution (no attribute starting with an
underscore, no unsafe callables), every undefined name an error, HTML autoescaped.

A template is checked when saved (:func:`check`): it must parse, render against a sample of its
event's context, and an HTML body may not carry active content (scripts, event handlers,
``javascript:`` links): email clients should not run them anyway, but oms does not store them.
Values come from orders (names, cities, carriers typed by connectors): in HTML they are
escaped, so a customer named ``<script>`` is shown, never run.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateError, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, _PassArg, pass_eval_context
from jinja2.visitor import NodeTransformer

MAX_TEMPLATE_CHARS = 65_536
MAX_SUBJECT_CHARS = 250
MAX_SMS_CHARS = 1_600  # ten concatenated SMS segments


MAX_OUTPUT_CHARS = 200_000
"""Most characters one part of a message may render to, and the most any value a template
builds may weigh (a string's length; a list, a dict: what it would print as), checked before it
is built."""
MAX_SIZE = 10_000
"""Largest repeat count, slice / batch / truncate size or exponent a template may use:
``{{ 'x' * 10**9 }}`` or ``{{ [1]|slice(10**9) }}`` would otherwise make the worker allocate
gigabytes."""
MAX_STEPS = 500_000
"""The work one rendering may do: a loop iteration, a filter, an attribute or item access, an
operator each cost a step, a call 20, weighing a value a step per element. Three nested
``range(1000)`` loops or a macro calling itself twice per level end here, in well under a
second, instead of holding the worker (or the API saving the template) for hours."""
MAX_INT_BITS = 4_096
"""Largest number a template may compute (``n * n`` repeated would grow without end)."""

_BIG_ATTRIBUTES = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs", "format"})
_BIG_ATTRIBUTES |= {"format_map"}
_BIG_FILTERS = ("center", "indent", "format", "wordwrap", "filesizeformat")
_SIZED_FILTERS = frozenset({"batch", "slice", "truncate", "round"})
"""Filters whose numeric arguments (after the value) size what they build."""

_CALL_STEPS = 20
"""A call (a macro, a method) costs more than a loop iteration: it does more."""
_STEPS: ContextVar[list[int] | None] = ContextVar("oms_template_steps", default=None)


def _spend(steps: int = 1) -> None:
    budget = _STEPS.get()
    if budget is None:
        raise SecurityError("message templates are rendered through oms.messages.rendering")
    budget[0] -= steps
    if budget[0] < 0:
        raise SecurityError(
            f"the template does too much work (more than {MAX_STEPS} steps: loops, calls)"
        )


def _weight(value: Any, limit: int = MAX_OUTPUT_CHARS) -> int:
    """About how many characters ``value`` prints as, counted only until past ``limit`` (each
    element visited costs a step)."""
    total = 0
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            total += len(v)
        elif isinstance(v, bool) or v is None:
            total += 5
        elif isinstance(v, int):
            total += v.bit_length() // 3 + 1
        elif isinstance(v, (list, tuple, set, frozenset)):
            total += 2 + 2 * len(v)
            if total <= limit:
                _spend(len(v))
                stack.extend(v)
        elif isinstance(v, dict):
            total += 2 + 4 * len(v)
            if total <= limit:
                _spend(2 * len(v))
                stack.extend(v.keys())
                stack.extend(v.values())
        elif isinstance(v, Namespace):
            stack.append(object.__getattribute__(v, "_Namespace__attrs"))
        else:
            total += 16
        if total > limit:
            break
    return total


def _too_big(*values: Any) -> None:
    """Refuse values that together would print as more than MAX_OUTPUT_CHARS characters."""
    total = 0
    for v in values:
        total += _weight(v)
        if total > MAX_OUTPUT_CHARS:
            raise SecurityError(
                f"a value of more than {MAX_OUTPUT_CHARS} characters is refused in a template"
            )


def _check_replace(text: Any, old: Any, new: Any) -> None:
    """``s.replace(old, new)``: at most ``count(old) * len(new)`` characters more."""
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        hits = len(text) + 1 if old == "" else text.count(old)
        if len(text) + hits * len(new) > MAX_OUTPUT_CHARS:
            raise SecurityError(f"a replacement this long (over {MAX_OUTPUT_CHARS}) is refused")


def _joined(separator: Any, items: Iterable[Any]) -> list[Any]:
    """The items of a join, once it is known that the result is not too long."""
    listed = list(items)
    _spend(len(listed))
    sep = len(separator) if isinstance(separator, str) else _weight(separator)
    if sep * max(0, len(listed) - 1) > MAX_OUTPUT_CHARS:
        raise SecurityError(f"a joined string of more than {MAX_OUTPUT_CHARS} is refused")
    _too_big(*listed)
    return listed


def _metered_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that spends a step, refuses too heavy values, too big sizes (``_SIZED_FILTERS``)
    and too long results (``replace``, ``join``) before running."""
    skip = 1 if _PassArg.from_obj(func) is not None else 0

    @functools.wraps(func)  # (keeps jinja_pass_arg: Jinja passes the same first argument)
    def metered(*args: Any, **kwargs: Any) -> Any:
        _spend()
        values = args[skip:]
        _too_big(*values, *kwargs.values())
        if name in _SIZED_FILTERS:
            for v in (*values[1:], *kwargs.values()):
                if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_SIZE:
                    raise SecurityError(f"{name} sizes above {MAX_SIZE} are refused")
        if name == "replace" and len(values) >= 3:
            _check_replace(values[0], values[1], values[2])
        if name == "join" and values:
            separator = kwargs.get("d", values[1] if len(values) > 1 else "")
            items = _joined(separator, values[0])  # (attribute: weighed as whole items)
            args = (*args[:skip], items, *values[1:])
        return func(*args, **kwargs)

    return metered


def _metered_loop(seq: Iterable[Any]) -> Iterator[Any]:
    """Every loop's iterable (added to each ``{% for %}``): a step per iteration."""
    for item in seq:
        _spend()
        yield item


@pass_eval_context
def _metered_concat(eval_ctx: Any, *parts: Any) -> Any:
    """``a ~ b ~ c`` (in place of Jinja's own concatenation): refused when too long."""
    _spend()
    _too_big(*parts)
    return markup_join(parts) if eval_ctx.autoescape else str_join(parts)


class _Metering(NodeTransformer):
    """Puts every loop's iterable through ``_metered_loop`` and every ``~`` through
    ``_metered_concat``, so that both spend the rendering's budget."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)  # (in place: a For stays a For)
        node.iter = nodes.Filter(node.iter, "_oms_loop", [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        first, *rest = node.nodes
        return nodes.Filter(first, "_oms_concat", rest, [], None, None, lineno=node.lineno)


def _finalize(value: Any) -> Any:
    """Every ``{{ value }}``: weighed before it is turned into text."""
    _too_big(value)
    return value


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, with the size of what a template can build and the work it may do bounded
    as well (``MAX_STEPS``, ``MAX_OUTPUT_CHARS``, ``MAX_SIZE``)."""

    # ``range`` in a template: a few loops, not a way to spin the worker
    MAX_RANGE = 1_000
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(
            autoescape=autoescape,
            undefined=StrictUndefined,
            auto_reload=False,
            finalize=_finalize,
        )
        for name in _BIG_FILTERS:
            self.filters.pop(name, None)
        self.globals.pop("lipsum", None)  # (``lipsum(10**6)``: megabytes of Latin)
        self.filters = {name: _metered_filter(name, f) for name, f in self.filters.items()}
        self.filters["_oms_loop"] = _metered_loop
        self.filters["_oms_concat"] = _metered_concat

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = _Metering().visit(super()._parse(source, name, filename))
        assert isinstance(tree, nodes.Template)
        tree.set_environment(self)
        return tree

    def getattr(self, obj: Any, attribute: str) -> Any:
        _spend()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _spend()
        return super().getitem(obj, argument)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _spend(_CALL_STEPS)
        _too_big(*args, *kwargs.values())
        owner = getattr(__obj, "__self__", None)
        method = getattr(__obj, "__name__", None)
        if isinstance(owner, str) and method == "replace" and len(args) >= 2:
            _check_replace(owner, args[0], args[1])
        if isinstance(owner, str) and method == "join" and args:
            args = (_joined(owner, args[0]), *args[1:])
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _spend()
        if operator == "%":
            raise SecurityError("the % operator is not available in message templates")
        if operator == "+" and not isinstance(left, (int, float)):
            if _weight(left) + _weight(right) > MAX_OUTPUT_CHARS:
                raise SecurityError("a string or list this long is refused")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
                    if _weight(seq) * n > MAX_OUTPUT_CHARS:
                        raise SecurityError("a repeated string or list this long is refused")
            if isinstance(left, int) and isinstance(right, int):
                if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                    raise SecurityError(f"numbers above {MAX_INT_BITS} bits are refused")
        numbers = [v for v in (left, right) if isinstance(v, int)]
        if any(abs(v) > MAX_SIZE for v in numbers) and (
            operator == "**" or any(isinstance(v, (str, list, tuple)) for v in (left, right))
        ):
            raise SecurityError(f"repeat counts and exponents above {MAX_SIZE} are refused")
        if operator == "**" and isinstance(left, int) and abs(left) > MAX_SIZE:
            raise SecurityError(f"powers of numbers above {MAX_SIZE} are refused")
        if operator == "**" and isinstance(left, int) and isinstance(right, int):
            if left.bit_length() * max(right, 0) > MAX_INT_BITS:
                raise SecurityError(f"numbers above {MAX_INT_BITS} bits are refused")
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
    budget = _STEPS.set([MAX_STEPS])  # (compiling spends too: Jinja folds constants)
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
    finally:
        _STEPS.reset(budget)


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
