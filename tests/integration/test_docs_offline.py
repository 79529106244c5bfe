"""`/docs` (Swagger UI) and `/redoc` work on a host without internet access: every asset they
load is served by oms itself, from files shipped in the package."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "oms"

_REFERENCE = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']""")
_JS_URL = re.compile(r"""\burl:\s*["']([^"']+)["']""")
CONTENT_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
    ".json": ("application/json",),
}


async def _references(client: httpx.AsyncClient, page: str) -> list[str]:
    resp = await client.get(page)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/html")
    html = resp.text
    assert "http://" not in html and "https://" not in html, html  # nothing from elsewhere
    found = _REFERENCE.findall(html) + _JS_URL.findall(html)
    assert found, html
    for url in found:
        assert url.startswith("/") and not url.startswith("//"), f"{page} loads {url}"
    return found


@pytest.mark.parametrize(
    ("page", "script"),
    [("/docs", "SwaggerUIBundle"), ("/redoc", "Redoc")],
    ids=["swagger", "redoc"],
)
async def test_docs_pages_load_only_same_origin_assets(
    client: httpx.AsyncClient, page: str, script: str
) -> None:
    urls = await _references(client, page)
    kinds = {Path(u).suffix for u in urls}
    assert ".js" in kinds and ".png" in kinds
    for url in urls:
        resp = await client.get(url)
        assert resp.status_code == 200, (url, resp.status_code)
        suffix = Path(url).suffix
        media = resp.headers["content-type"].split(";")[0].strip()
        assert media in CONTENT_TYPES[suffix], (url, media)
        assert len(resp.content) > 100, url
        if suffix == ".js":
            assert script in resp.text
    if page == "/docs":
        assert ".css" in kinds
        redirect = await client.get("/docs/oauth2-redirect")
        assert redirect.status_code == 200
        assert "https://" not in redirect.text and "http://" not in redirect.text


async def test_a_missing_asset_is_a_404_problem(client: httpx.AsyncClient) -> None:
    urls = await _references(client, "/docs")
    folder = next(u for u in urls if u.endswith(".js")).rsplit("/", 1)[0]
    resp = await client.get(f"{folder}/nope.js")
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"
    traversal = await client.get(f"{folder}/..%2F..%2Fconfig.py")
    assert traversal.status_code == 404


def test_docs_assets_ship_in_the_package_with_their_licenses() -> None:
    """Every file under oms/static is package data (pyproject globs), licences included."""
    static = PACKAGE / "static"
    files = {p for p in static.rglob("*") if p.is_file()}
    names = {p.name for p in files}
    for needed in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        assert needed in names
    assert sum(p.name == "LICENSE" for p in files) >= 2  # swagger-ui and redoc
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["oms"]
    shipped = {p for pattern in globs for p in PACKAGE.glob(pattern) if p.is_file()}
    assert files <= shipped, sorted(str(p) for p in files - shipped)
