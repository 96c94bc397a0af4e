"""Content-Security-Policy of the admin, the merchant site and /docs, as the buyer's pages
have theirs.

The buyer's pages (checkout/pages.py, shopify_bridge/pages.py) set their own policy on each
response; the admin and the API docs are third-party templates, so this middleware sets
theirs by path. Scripts run only from our own origin everywhere: Swagger UI's start-up
script is served from /docs?script= (drf-spectacular's split view) rather than inline.
"""

import base64
import hashlib
import re
from functools import lru_cache

from django.template.loader import get_template
from drf_spectacular.views import SpectacularSwaggerSplitView

_COMMON = {
    "default-src": "'self'",
    "script-src": "'self'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
}


def _policy(**directives: str) -> str:
    merged = {**_COMMON, **{name.replace("_", "-"): value for name, value in directives.items()}}
    return "; ".join(f"{name} {value}" for name, value in merged.items())


# Django's admin writes style="" attributes and, on some lists, a <style> element; its
# scripts are all files. Its related-object popups are windows, not frames.
ADMIN_POLICY = _policy(style_src="'self' 'unsafe-inline'", frame_ancestors="'none'")
# The merchant site (dashboard/): our own files only; product images and logos may be on
# the merchant's https host.
DASHBOARD_POLICY = _policy(
    style_src="'self'", img_src="'self' https: data:", frame_ancestors="'none'"
)


@lru_cache(maxsize=1)
def docs_policy() -> str:
    """Swagger UI's page has one inline <style> (static text in drf-spectacular's template):
    allowed by its hash, read from the template itself so an upgrade cannot break it."""
    source = get_template("drf_spectacular/swagger_ui.html").template.source
    digests = [
        hashlib.sha256(css.encode()).digest()
        for css in re.findall(r"<style>(.*?)</style>", source, re.DOTALL)
    ]
    hashes = [f"'sha256-{base64.b64encode(digest).decode()}'" for digest in digests]
    return _policy(style_src=" ".join(["'self'", *hashes]), frame_ancestors="'none'")


class DocsView(SpectacularSwaggerSplitView):
    """Swagger UI at /docs (GET only: its HTML renderer cannot answer OPTIONS)."""

    http_method_names = ["get", "head"]


class ContentSecurityPolicy:
    """Sets the policy of the admin and /docs on responses that have none of their own."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.path.startswith("/admin/"):
            response.headers.setdefault("Content-Security-Policy", ADMIN_POLICY)
        elif request.path.startswith("/dashboard/"):
            response.headers.setdefault("Content-Security-Policy", DASHBOARD_POLICY)
        elif request.path == "/docs":
            response.headers.setdefault("Content-Security-Policy", docs_policy())
        return response
