"""The operations console at /console: server-rendered pages (Jinja2 templates, htmx, charts as
inline SVG) over the same services and flows as the API. See README "Operations console"."""
