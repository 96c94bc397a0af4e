"""The merchant site's pages. Views read the form, call one selector or service, render.

Every view runs as `merchant_required`: the merchant is the signed-in user's, and rows are
looked up within it (another merchant's id finds nothing: a 404 page).
"""

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.core.paginator import Paginator
from django.http import Http404, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from checkout import links
from checkout import selectors as checkout_selectors
from checkout import services as checkout_services
from checkout.models import ApiKey
from config.problems import Problem
from refunds import services as refund_services
from refunds.models import Refund
from refunds.serializers import claim_url

from . import charts, selectors
from .auth import merchant_required
from .forms import InvoiceFilterForm, ProductForm, RefundForm, SettingsForm

PAGE_SIZE = 50


class LoginView(auth_views.LoginView):
    template_name = "dashboard/login.html"
    redirect_authenticated_user = True
    next_page = "dashboard:home"


class LogoutView(auth_views.LogoutView):
    next_page = "dashboard:login"


# --- the dashboard ---------------------------------------------------------------------


@require_GET
@merchant_required
def home(request):
    try:
        period = int(request.GET.get("days", 30))
    except ValueError:
        period = 30
    if period not in selectors.PERIODS:
        period = 30
    merchant = request.merchant
    sales = selectors.sales_per_day(merchant, period)
    context = {
        "nav": "home",
        "period": period,
        "periods": selectors.PERIODS,
        "sales": sales,
        "sats_chart": charts.bar_chart(
            [(d.day, d.sats) for d in sales.days], "sats", f"Revenue in sats, last {period} days"
        ),
        "count_chart": charts.bar_chart(
            [(d.day, d.count) for d in sales.days], "paid", f"Paid invoices, last {period} days"
        ),
        "fiat_charts": [
            charts.bar_chart(
                [(d.day, d.fiat.get(currency, 0)) for d in sales.days],
                currency,
                f"Sales in {currency}, last {period} days",
            )
            for currency in sales.fiat
        ],
        "top_products": selectors.top_products(merchant, period),
        "counts": selectors.invoice_counts(merchant),
        "wallet": selectors.wallet_summary(merchant),
    }
    return render(request, "dashboard/home.html", context)


# --- invoices ----------------------------------------------------------------------------


def _filtered(request):
    form = InvoiceFilterForm(request.GET)
    wanted = form.wanted() if form.is_valid() else selectors.InvoiceFilter()
    return form, wanted


@require_GET
@merchant_required
def invoices(request):
    form, wanted = _filtered(request)
    found = selectors.find_invoices(request.merchant, wanted).select_related("invoice", "product")
    page = Paginator(found, PAGE_SIZE).get_page(request.GET.get("page"))
    query = wanted.as_query()
    context = {
        "nav": "invoices",
        "form": form,
        "page": page,
        "query": query,
        "export_query": "&".join(f"{k}={v}" for k, v in query.items()),
    }
    return render(request, "dashboard/invoices.html", context)


@require_GET
@merchant_required
def invoices_csv(request):
    form, wanted = _filtered(request)
    if not form.is_valid():
        problems = "; ".join(" ".join(errors) for errors in form.errors.values())
        return HttpResponseBadRequest(
            f"The filter is not valid: {problems}", content_type="text/plain; charset=utf-8"
        )
    found = selectors.find_invoices(request.merchant, wanted)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response = StreamingHttpResponse(
        selectors.invoices_csv(found), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="invoices-{stamp}.csv"'
    response["Cache-Control"] = "no-store"
    return response


def _checkout(request, invoice_id):
    checkout = checkout_selectors.checkout_of(request.merchant, invoice_id)
    if checkout is None:
        raise Http404("No such invoice.")
    return checkout


@require_http_methods(["GET", "POST"])
@merchant_required
def invoice_detail(request, invoice_id):
    checkout = _checkout(request, invoice_id)
    refund_form = RefundForm(_posted(request))
    if request.method == "POST" and refund_form.is_valid():
        try:
            refund = _refund(request.merchant, checkout, refund_form.cleaned_data)
        except Problem as exc:
            refund_form.add_error(None, exc.detail)
        else:
            messages.success(request, f"Refund {refund.public_id} created: {refund.state}.")
            return redirect("dashboard:invoice", invoice_id=checkout.public_id)
    payment = None
    refundable_sats = 0
    if checkout.status == "paid":
        try:
            payment = refund_services.payment_of_checkout(request.merchant, checkout)
        except Problem:
            payment = None
        if payment is not None:
            left = payment.amount_msat - refund_services.refunded_msat(payment)
            refundable_sats = max(left, 0) // 1000
    context = {
        "nav": "invoices",
        "checkout": checkout,
        "timeline": selectors.timeline(checkout),
        "refunds": [
            (r, claim_url(r) if r.state == Refund.State.CLAIMABLE and r.claim_token else None)
            for r in selectors.refunds_of(checkout)
        ],
        "refund_form": refund_form,
        "refundable_sats": refundable_sats,
        "can_refund": payment is not None and refundable_sats > 0,
    }
    return render(request, "dashboard/invoice.html", context, status=_status(request, refund_form))


def _posted(request):
    """The POST data of a POST (even an empty one: a bound form), else None."""
    return request.POST if request.method == "POST" else None


def _status(request, form) -> int:
    """A form sent with mistakes is shown again with them, as a 400."""
    return 400 if request.method == "POST" and form.errors else 200


def _refund(merchant, checkout, data) -> Refund:
    payment = refund_services.payment_of_checkout(merchant, checkout)
    refund = refund_services.create_refund(
        merchant,
        payment,
        amount_sats=data.get("amount_sats"),
        reason=data.get("reason") or "",
        refund_address=data.get("refund_address") or "",
    )
    if refund.state == Refund.State.PENDING:
        refund = refund_services.pay_out(refund.pk)  # to the buyer's address, now
    return refund


# --- products ----------------------------------------------------------------------------


@require_GET
@merchant_required
def products(request):
    rows = checkout_selectors.products_of(request.merchant)
    context = {
        "nav": "products",
        "products": [(p, links.payment_link(p)) for p in rows],
    }
    return render(request, "dashboard/products.html", context)


@require_http_methods(["GET", "POST"])
@merchant_required
def product_edit(request, product_id=None):
    product = None
    if product_id is not None:
        product = checkout_selectors.product_of(request.merchant, product_id)
        if product is None:
            raise Http404("No such product.")
    initial = {} if product else {"currency": request.merchant.default_currency}
    form = ProductForm(_posted(request), instance=product, initial=initial)
    if request.method == "POST" and form.is_valid():
        fields = {name: form.cleaned_data[name] for name in ProductForm.Meta.fields}
        if product is None:
            product = checkout_services.create_product(request.merchant, **fields)
            messages.success(request, f"Product “{product.name}” created.")
        else:
            checkout_services.update_product(product, **fields)
            messages.success(request, f"Product “{product.name}” saved.")
        return redirect("dashboard:product", product_id=product.public_id)
    context = {
        "nav": "products",
        "form": form,
        "product": product,
        "payment_link": links.payment_link(product) if product else None,
        "button_html": links.button_html(product) if product else "",
    }
    return render(request, "dashboard/product.html", context, status=_status(request, form))


# --- settings and API keys -------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@merchant_required
def settings_page(request):
    form = SettingsForm(_posted(request), instance=request.merchant)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Settings saved.")
        return redirect("dashboard:settings")
    context = {"nav": "settings", "form": form}
    return render(request, "dashboard/settings.html", context, status=_status(request, form))


@require_http_methods(["GET", "POST"])
@merchant_required
def api_keys(request):
    new_key = None
    error = ""
    if request.method == "POST":
        name = (request.POST.get("name") or "").strip()
        kind = request.POST.get("kind")
        if not name or len(name) > 100:
            error = "Give the key a name (at most 100 characters)."
        elif kind not in ApiKey.Kind.values:
            error = "Choose the kind of key."
        else:
            key, new_key = checkout_services.issue_api_key(request.merchant, kind, name)
    keys = ApiKey.objects.filter(merchant=request.merchant).order_by("-created_at", "-pk")
    context = {
        "nav": "keys",
        "keys": keys,
        "kinds": ApiKey.Kind.choices,
        "new_key": new_key,
        "error": error,
    }
    return render(request, "dashboard/keys.html", context, status=400 if error else 200)


@require_POST
@merchant_required
def revoke_key(request, key_id):
    key = ApiKey.objects.filter(merchant=request.merchant, pk=key_id).first()
    if key is None:
        raise Http404("No such key.")
    checkout_services.revoke_api_key(key)
    messages.success(request, f"Key “{key.name}” revoked.")
    return redirect("dashboard:keys")
