"""Accessibility check with axe-core (vendored: tests/browser/vendor/axe.min.js, MPL-2.0, see
axe-core.LICENSE), injected into the page under test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import Page

AXE_JS = Path(__file__).parent / "vendor" / "axe.min.js"
BLOCKING = frozenset({"serious", "critical"})


async def axe_violations(page: Page, *, impacts: frozenset[str] = BLOCKING) -> list[dict[str, Any]]:
    """Run axe-core (WCAG 2.0/2.1 A and AA rules, best practices) on the page as it is now and
    return the violations of the given impacts (serious and critical by default)."""
    if not await page.evaluate("() => typeof window.axe !== 'undefined'"):
        await page.add_script_tag(path=str(AXE_JS))
    result: dict[str, Any] = await page.evaluate(
        """async () => await window.axe.run(document, {
            runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa',
                                            'best-practice']},
            resultTypes: ['violations'],
        })"""
    )
    return [v for v in result["violations"] if v.get("impact") in impacts]


async def assert_accessible(page: Page) -> None:
    """Fail with a readable list if axe finds a serious or critical violation on the page."""
    violations = await axe_violations(page)
    lines = [
        f"{v['id']} ({v['impact']}): {v['help']} -> "
        + "; ".join(", ".join(n["target"]) for n in v["nodes"][:5])
        for v in violations
    ]
    assert not violations, "accessibility violations:\n" + "\n".join(lines)
