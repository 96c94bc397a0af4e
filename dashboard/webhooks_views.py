"""The merchant site's webhook pages (endpoints, their deliveries and attempts).

The rules are the webhooks services' (and the API's validation, through the form): these
views read the form, call one service, render. Everything is looked up within
request.merchant, so another merchant's id is a 404. A signing secret is shown once, in
the answer to the POST that made it (create, rotate), never on a page loaded later.
"""

import json

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from config.problems import Problem
from webhooks import services
from webhooks.models import WebhookDelivery, WebhookEndpoint

from .auth import merchant_required
from .webhook_forms import EndpointForm

RECENT_DELIVERIES = 25
FIELDS = ("url", "description", "events", "enabled")


def _endpoint(request, endpoint_id) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.filter(
        merchant=request.merchant, public_id=endpoint_id
    ).first()
    if endpoint is None:
        raise Http404("No such webhook endpoint.")
    return endpoint


def _delivery(request, delivery_id) -> WebhookDelivery:
    # A delivery to a checkout's own webhookUrl has no endpoint: its event says whose it is.
    delivery = (
        WebhookDelivery.objects.select_related("event", "endpoint")
        .filter(public_id=delivery_id, event__merchant=request.merchant)
        .first()
    )
    if delivery is None:
        raise Http404("No such delivery.")
    return delivery


def _with_secret(response):
    """A page that shows a secret is not kept by the browser or a proxy."""
    response["Cache-Control"] = "no-store"
    return response


# --- endpoints -------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@merchant_required
def endpoints(request):
    form = EndpointForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        created = services.create_endpoint(request.merchant, **form.cleaned_data)
        form = EndpointForm()
    context = {
        "nav": "webhooks",
        "endpoints": WebhookEndpoint.objects.filter(merchant=request.merchant).order_by(
            "-created_at", "-pk"
        ),
        "form": form,
        "created": created,
    }
    status = 400 if request.method == "POST" and created is None else 200
    response = render(request, "dashboard/webhooks.html", context, status=status)
    return _with_secret(response) if created else response


def _endpoint_page(request, endpoint, form=None, new_secret="", status=200):
    context = {
        "nav": "webhooks",
        "endpoint": endpoint,
        "form": form or EndpointForm(initial=EndpointForm.initial_of(endpoint)),
        "deliveries": endpoint.deliveries.select_related("event").order_by("-created_at", "-pk")[
            :RECENT_DELIVERIES
        ],
        "new_secret": new_secret,
    }
    response = render(request, "dashboard/webhook.html", context, status=status)
    return _with_secret(response) if new_secret else response


@require_http_methods(["GET", "POST"])
@merchant_required
def endpoint_detail(request, endpoint_id):
    endpoint = _endpoint(request, endpoint_id)
    if request.method == "GET":
        return _endpoint_page(request, endpoint)
    form = EndpointForm(request.POST, initial=EndpointForm.initial_of(endpoint))
    if not form.is_valid():
        return _endpoint_page(request, endpoint, form=form, status=400)
    # Only what the merchant changed: a change made meanwhile elsewhere (the delivery path
    # disabling the endpoint) stands unless this form changes that field too.
    changes = {
        name: form.cleaned_data[name]
        for name in FIELDS
        if form.cleaned_data[name] != getattr(endpoint, name)
    }
    if changes:
        services.update_endpoint(endpoint, **changes)
    messages.success(request, "Endpoint saved." if changes else "Nothing changed.")
    return redirect("dashboard:webhook", endpoint_id=endpoint.public_id)


@require_POST
@merchant_required
def send_test(request, endpoint_id):
    endpoint = _endpoint(request, endpoint_id)
    delivery = services.send_test_event(endpoint)
    messages.success(
        request,
        f"Test event sent to {endpoint.url} (delivery {delivery.public_id}). "
        "Its attempt shows below in a few seconds.",
    )
    return redirect("dashboard:webhook", endpoint_id=endpoint.public_id)


@require_POST
@merchant_required
def rotate(request, endpoint_id):
    endpoint = _endpoint(request, endpoint_id)
    secret = services.rotate_secret(endpoint)
    return _endpoint_page(request, endpoint, new_secret=secret)


@require_POST
@merchant_required
def delete(request, endpoint_id):
    endpoint = _endpoint(request, endpoint_id)
    url = endpoint.url
    endpoint.delete()
    messages.success(request, f"Endpoint {url} deleted, with its deliveries.")
    return redirect("dashboard:webhooks")


# --- deliveries ------------------------------------------------------------------------


def _pretty(body: str) -> str:
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body


@require_GET
@merchant_required
def delivery_detail(request, delivery_id):
    delivery = _delivery(request, delivery_id)
    context = {
        "nav": "webhooks",
        "delivery": delivery,
        "event": delivery.event,
        "body": _pretty(delivery.event.body),
        "attempts": list(delivery.attempts.all()),
    }
    return render(request, "dashboard/delivery.html", context)


@require_POST
@merchant_required
def redeliver(request, delivery_id):
    delivery = _delivery(request, delivery_id)
    try:
        services.redeliver(delivery)
    except Problem as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, "Sent again: the new attempt shows below in a few seconds.")
    return redirect("dashboard:delivery", delivery_id=delivery.public_id)


urlpatterns = [
    path("webhooks", endpoints, name="webhooks"),
    path("webhooks/deliveries/<str:delivery_id>", delivery_detail, name="delivery"),
    path("webhooks/deliveries/<str:delivery_id>/redeliver", redeliver, name="delivery-redeliver"),
    path("webhooks/<str:endpoint_id>", endpoint_detail, name="webhook"),
    path("webhooks/<str:endpoint_id>/test", send_test, name="webhook-test"),
    path("webhooks/<str:endpoint_id>/rotate", rotate, name="webhook-rotate"),
    path("webhooks/<str:endpoint_id>/delete", delete, name="webhook-delete"),
]
