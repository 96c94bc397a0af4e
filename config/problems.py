"""RFC 9457 problem details: the one error shape of the whole API.

Every error answers `application/problem+json` with `type`, `title`, `status`, `detail`,
`instance` (the path of the request that failed), a stable `error` slug, `message` (the
detail again: clients such as lightning-enable-mcp show a `message` field to their user)
and, for validation errors, `errors` (field -> messages).
"""

from contextvars import ContextVar
from http import HTTPStatus

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, JsonResponse
from django.views import defaults
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers
from rest_framework.views import exception_handler as drf_exception_handler

PROBLEM_CONTENT_TYPE = "application/problem+json"
# The path of the request being answered (set by config.middleware.ProblemInstance), so
# that every problem body names its `instance` wherever it is built.
current_path: ContextVar[str | None] = ContextVar("current_path", default=None)


class Problem(exceptions.APIException):
    """Raise from a view or service to answer with a specific problem."""

    def __init__(self, status: int, error: str, detail: str, errors=None, headers=None, extra=None):
        """`extra`: more members of the body (e.g. LNbits' `status` of a payment error)."""
        self.status_code = status
        self.error = error
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra or {}
        super().__init__(detail)


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # 520: LNbits' status for a payment that did not succeed
        return "Payment Error" if status == 520 else "Error"


def problem_body(status: int, error: str, detail: str, errors=None) -> dict:
    body = {
        "type": f"about:blank#{error}",
        "title": _title(status),
        "status": status,
        "detail": detail,
        "error": error,
        "message": detail,
    }
    path = current_path.get()
    if path is not None:
        body["instance"] = path
    if errors:
        body["errors"] = errors
    return body


def problem_response(status: int, error: str, detail: str, errors=None, headers=None):
    """A plain Django response with a problem body (for non-DRF views)."""
    response = JsonResponse(
        problem_body(status, error, detail, errors),
        status=status,
        content_type=PROBLEM_CONTENT_TYPE,
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _flatten(detail, prefix=""):
    """DRF's nested ValidationError detail -> {"field.sub": ["message", ...]}."""
    out = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = "body" if key == "non_field_errors" else key
            out.update(_flatten(value, f"{prefix}{name}" if not prefix else f"{prefix}.{name}"))
    elif (
        isinstance(detail, list) and detail and all(not isinstance(d, (dict, list)) for d in detail)
    ):
        out[prefix or "body"] = [str(d) for d in detail]
    elif isinstance(detail, list):
        for index, value in enumerate(detail):
            out.update(_flatten(value, f"{prefix}[{index}]"))
    else:
        out[prefix or "body"] = [str(detail)]
    return out


_SLUGS = {
    exceptions.ParseError: "malformed_json",
    exceptions.AuthenticationFailed: "unauthorized",
    exceptions.NotAuthenticated: "unauthorized",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
}


def is_api_path(path: str) -> bool:
    """Paths whose errors are problem+json; everything else is a page (HTML errors)."""
    return path.startswith(("/api/", "/l402/", "/v1/"))


def request_too_large():
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return Problem(413, "request_too_large", f"The request body is larger than {limit} bytes.")


# Django's error views (handler400/404/500 in config/urls.py): problem+json on API paths.


def bad_request(request, exception):
    if not is_api_path(request.path):
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        problem = request_too_large()
        return problem_response(413, problem.error, str(problem.detail))
    return problem_response(400, "bad_request", "The request is malformed.")


def not_found(request, exception):
    if not is_api_path(request.path):
        return defaults.page_not_found(request, exception)
    return problem_response(404, "not_found", f"Nothing is at {request.path}.")


def server_error(request):
    if not is_api_path(request.path):
        return defaults.server_error(request)
    return problem_response(500, "server_error", "Something went wrong on our side; it is logged.")


def exception_handler(exc, context):
    """DRF exception handler that renders every error as problem+json."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, RequestDataTooBig):
        exc = request_too_large()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a real bug: let Django's 500 handling log it
    if isinstance(exc, Problem):
        body = problem_body(exc.status_code, exc.error, str(exc.detail), exc.errors)
        body.update(exc.extra)
        for name, value in exc.headers.items():
            response[name] = value
    elif isinstance(exc, exceptions.ValidationError):
        errors = _flatten(exc.detail)
        first = next(iter(errors.items()))
        detail = f"{first[0]}: {first[1][0]}" if first[0] != "body" else first[1][0]
        body = problem_body(400, "validation_error", detail, errors)
    else:
        slug = next((s for cls, s in _SLUGS.items() if isinstance(exc, cls)), "error")
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        body = problem_body(response.status_code, slug, detail)
    response.data = body
    response.content_type = PROBLEM_CONTENT_TYPE
    return response


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details, the shape of every error."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    error = serializers.CharField(help_text="A stable slug, e.g. validation_error, not_found.")
    message = serializers.CharField(help_text="What went wrong, for a person (= detail).")
    instance = serializers.CharField(help_text="The path of the request that failed.")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="For validation errors: field -> messages.",
    )


PROBLEM_DESCRIPTIONS = {
    400: "Invalid input: `errors` maps each field to what is wrong with it.",
    401: "No API key, or an unknown or revoked one.",
    402: "Payment required.",
    403: "This needs an admin key.",
    404: "No such object (or it belongs to another merchant).",
    409: "The request conflicts with the object's state.",
    413: "The request body is larger than the server accepts.",
    415: "The request body is not JSON (send `Content-Type: application/json`).",
    422: "The Idempotency-Key was already used with a different request body.",
    429: "Too many requests from this address; see Retry-After.",
    502: "The upstream could not be reached.",
    503: "The exchange-rate provider or the Lightning node is unavailable.",
    504: "The upstream did not answer in time.",
}


def problem_doc(code: int, description: str | None = None) -> OpenApiResponse:
    """The OpenAPI response of one problem+json error."""
    return OpenApiResponse(ProblemSerializer, description=description or PROBLEM_DESCRIPTIONS[code])


def problems(*codes: int, **descriptions: str) -> dict:
    """OpenAPI responses for the problem+json errors an operation can answer.

    `descriptions` overrides the generic wording of a code: `problems(404, d404="...")`.
    """
    return {
        (code, PROBLEM_CONTENT_TYPE): problem_doc(code, descriptions.get(f"d{code}"))
        for code in codes
    }
