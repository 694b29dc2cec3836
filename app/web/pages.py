"""HTML of the dashboard: page shells the script fills from embedded JSON, and the few
pages that need no script (the key form, not found, errors).

Data goes into a page only as JSON inside ``<script type="application/json">`` (with
``<``, ``>`` and ``&`` escaped, so no text can close the element) and is put on screen
with ``textContent``; text in markup is escaped with ``html.escape``.
"""

from __future__ import annotations

import html
import json
from functools import cache
from pathlib import Path
from typing import Any

STATIC_DIR = Path(__file__).parent / "static"
ASSET_TYPES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
# Served pages load their script and style from /ui/static and never run inline code.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "media-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
            "frame-ancestors 'none'")
# An exported page is one file: inline script and style, pictures as data URIs, and no
# network at all (it must not call home when opened).
EXPORT_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
              "img-src data:; base-uri 'none'; form-action 'none'")


@cache
def asset(name: str) -> str:
    """The text of a static asset (``dashboard.js`` or ``dashboard.css``)."""
    if name not in ASSET_TYPES:
        raise KeyError(name)
    return (STATIC_DIR / name).read_text("utf-8")


def script_json(data: Any) -> str:
    """JSON safe inside a ``<script>`` element."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _head(title: str, styles: str) -> str:
    # Referrer "same-origin", not "no-referrer": with the latter a browser sends
    # ``Origin: null`` on form posts, and the forms' origin check needs the real one.
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<meta name=\"referrer\" content=\"same-origin\"><title>{_e(title)} · vidnav"
            f"</title>{styles}</head>")


def _header(tenant: str | None, csrf: str | None) -> str:
    who = ""
    if tenant is not None and csrf is not None:
        who = (f"<span class=\"who\">{_e(tenant)}</span><form method=\"post\" "
               "action=\"/ui/logout\" class=\"logout\"><input type=\"hidden\" name=\"csrf\" "
               f"value=\"{_e(csrf)}\"><button type=\"submit\">Sign out</button></form>")
    return ("<header class=\"top\"><a class=\"brand\" href=\"/ui/jobs\">vidnav</a><nav>"
            "<a href=\"/ui/jobs\">Jobs</a><a href=\"/ui/videos\">Videos</a></nav>"
            f"{who}</header>")


def app_page(view: str, title: str, data: Any, *, tenant: str, csrf: str,
             extra_html: str = "") -> str:
    """A page the script renders: ``view`` names the renderer, ``data`` its first state."""
    styles = "<link rel=\"stylesheet\" href=\"/ui/static/dashboard.css\">"
    return (f"{_head(title, styles)}<body>{_header(tenant, csrf)}"
            f"<main id=\"app\" data-view=\"{_e(view)}\"><noscript>This page needs "
            "JavaScript.</noscript></main>"
            f"{extra_html}<script type=\"application/json\" id=\"vidnav-data\">"
            f"{script_json(data)}</script>"
            "<script src=\"/ui/static/dashboard.js\" defer></script></body></html>")


def _post_form(section_id: str, action: str, csrf: str, body: str, heading: str = "") -> str:
    """A card holding a plain-HTML POST form with the page's token (works without the
    script)."""
    title = f"<h2>{_e(heading)}</h2>" if heading else ""
    return (
        f"<section class=\"card {section_id}\" id=\"{section_id}\">{title}"
        f"<form method=\"post\" action=\"{_e(action)}\">"
        f"<input type=\"hidden\" name=\"csrf\" value=\"{_e(csrf)}\">{body}</form></section>")


def ask_form(video_id: str, csrf: str) -> str:
    """The video page's question form."""
    return _post_form(
        "ask", f"/ui/videos/{video_id}/questions", csrf, heading="Ask a question", body=(
            "<label>Question<textarea name=\"question\" required maxlength=\"4000\" "
            "rows=\"2\"></textarea></label>"
            "<label>Options <small>(optional, one per line)</small>"
            "<textarea name=\"options\" rows=\"3\"></textarea></label>"
            "<label>Most rounds <small>(optional)</small><input type=\"number\" "
            "name=\"max_rounds\" min=\"1\" max=\"200\"></label>"
            "<button type=\"submit\">Ask</button>"))


def cancel_form(job_id: str, csrf: str) -> str:
    """The job page's cancel button, for a job still queued or running."""
    return _post_form(
        "cancel", f"/ui/jobs/{job_id}/cancel", csrf, body=(
            "<button type=\"submit\">Cancel this job</button> <small>A queued job stops at "
            "once; a running one after its current round.</small>"))


def key_page(next_path: str, message: str | None = None) -> str:
    """The form asking for an API key (sent only to this server, kept in a cookie)."""
    styles = "<link rel=\"stylesheet\" href=\"/ui/static/dashboard.css\">"
    note = f"<p class=\"error\" role=\"alert\">{_e(message)}</p>" if message else ""
    return (
        f"{_head('API key', styles)}<body>{_header(None, None)}<main class=\"narrow\">"
        "<section class=\"card\" id=\"key-form\"><h1>Your API key</h1>"
        "<p>The dashboard shows your tenant's videos and jobs. Enter the API key "
        "<code>vidnav tenants create</code> printed; it is kept in a cookie for this "
        "browser session, sent only to this server.</p>"
        f"{note}<form method=\"post\" action=\"/ui/login\">"
        f"<input type=\"hidden\" name=\"next\" value=\"{_e(next_path)}\">"
        "<label>API key<input type=\"password\" name=\"key\" required autocomplete="
        "\"current-password\" maxlength=\"200\"></label>"
        "<button type=\"submit\">Open the dashboard</button></form></section></main>"
        "</body></html>")


def message_page(title: str, message: str, *, tenant: str | None = None,
                 csrf: str | None = None) -> str:
    """A page that only says something (not found, bad input)."""
    styles = "<link rel=\"stylesheet\" href=\"/ui/static/dashboard.css\">"
    return (f"{_head(title, styles)}<body>{_header(tenant, csrf)}<main class=\"narrow\">"
            f"<section class=\"card\" id=\"message\"><h1>{_e(title)}</h1><p>{_e(message)}</p>"
            "<p><a href=\"/ui/jobs\">Back to the jobs</a></p></section></main></body></html>")


def reload_page(path: str) -> str:
    """Loads ``path`` again from this origin: a link followed from another site arrives
    without the SameSite=Strict cookie, which the same-site reload then carries."""
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"refresh\" content=\"0;url={_e(path)}\"><title>vidnav</title>"
            f"</head><body><p><a href=\"{_e(path)}\">Continue</a></p></body></html>")


def export_page(title: str, data: Any) -> str:
    """One self-contained page of a job: script, style, data and pictures inline."""
    styles = (f"<meta http-equiv=\"Content-Security-Policy\" content=\"{_e(EXPORT_CSP)}\">"
              f"<style>{asset('dashboard.css')}</style>")
    script = asset("dashboard.js").replace("</script", "<\\/script")
    return (f"{_head(title, styles)}<body class=\"export\"><header class=\"top\">"
            "<span class=\"brand\">vidnav</span><span class=\"who\">exported job</span>"
            "</header><main id=\"app\" data-view=\"job\"></main>"
            f"<script type=\"application/json\" id=\"vidnav-data\">{script_json(data)}"
            f"</script><script>{script}</script></body></html>")
