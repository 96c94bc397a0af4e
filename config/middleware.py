"""Middleware of the whole site."""

from django.conf import settings
from django.views import defaults

from .problems import current_path, is_api_path, problem_response, request_too_large


class ProblemInstance:
    """Lets every problem body built while answering this request name its `instance`."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = current_path.set(request.path)
        try:
            return self.get_response(request)
        finally:
            current_path.reset(token)


class RequestSizeLimit:
    """A 413 problem for an API request whose declared body exceeds
    DATA_UPLOAD_MAX_MEMORY_SIZE, before anything reads it. Django enforces the limit only
    where `request.body` is read (an HTML 400); DRF's parser reads the stream directly, so
    without this it would take any size."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and is_api_path(request.path):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > limit:
                problem = request_too_large()
                return problem_response(413, problem.error, str(problem.detail))
        return self.get_response(request)


class RefuseNul:
    """A 400 for a NUL character in the path or the query string, which PostgreSQL cannot
    compare with (a 500 when an id in the path was looked up). The paid proxy checks its
    own paths and forwards its query strings, so it is left to do so."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/l402/proxy/"):
            return self.get_response(request)
        if "\x00" in request.path or "%00" in request.META.get("QUERY_STRING", ""):
            if is_api_path(request.path):
                return problem_response(
                    400,
                    "bad_request",
                    "The path and the query must not contain the NUL character (%00).",
                )
            return defaults.bad_request(request, None)
        return self.get_response(request)


def api_methods(*methods: str):
    """Declare the methods a function view under /api/ answers: MethodNotAllowed answers
    the others with a 405 problem, as it does for class-based views."""

    def declare(view):
        view.api_methods = [method.upper() for method in methods]
        return view

    return declare


def allowed_methods(view) -> list[str] | None:
    """The methods a view answers: a class-based view's handlers (HEAD with GET), or what a
    function view declares with `api_methods`; None when a function view declares none."""
    view_class = getattr(view, "view_class", None) or getattr(view, "cls", None)
    if view_class is None:
        return getattr(view, "api_methods", None)
    names = [name for name in view_class.http_method_names if hasattr(view_class, name)]
    if "get" in names and "head" not in names:
        names.append("head")
    return [name.upper() for name in names]


class MethodNotAllowed:
    """A 405 problem (with Allow) for a method an API view has no handler for, before the
    view runs: DRF authenticates first, so an unknown method got a 401 without a key and a
    405 with one. In `process_view`, so the URL is resolved once, by Django."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if not is_api_path(request.path):
            return None
        allowed = allowed_methods(view_func)
        if allowed is None or request.method in allowed:
            return None
        return problem_response(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed here; allowed: {', '.join(allowed)}.",
            headers={"Allow": ", ".join(allowed)},
        )
