"""The buyer's side of a refund link: the page (scan an LNURL-withdraw QR with any wallet,
or paste an invoice of the exact amount) and the LNURL-withdraw endpoints (LUD-03).

The link's token is the only credential (256 random bits, also the LNURL `k1`), so the
paste form needs no CSRF cookie: a forged request would have to know the token."""

from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from checkout.pages import _with_csp, format_fiat, format_sats, lightning_qr_svg

from . import services
from .models import Refund
from .serializers import withdraw_callback_url, withdraw_lnurl


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def refund_page(request, token):
    refund = Refund.objects.select_related("merchant", "payout").filter(claim_token=token).first()
    if refund is None:
        return _with_csp(render(request, "checkout/not_found.html", status=404))
    error = ""
    status = 200
    if request.method == "POST":
        try:
            refund = services.claim(token, request.POST.get("invoice", ""))
        except services.ClaimError as exc:
            error, status = str(exc), exc.status
    refund.refresh_from_db()
    services.expire_if_due(refund)
    lnurl = withdraw_lnurl(refund) if refund.state == Refund.State.CLAIMABLE else ""
    context = {
        "title": f"Your refund from {refund.merchant.name}"
        if refund.purpose == Refund.Purpose.REFUND
        else f"Your sats from {refund.merchant.name}",
        "heading": "Your refund" if refund.purpose == Refund.Purpose.REFUND else "Your sats",
        "noun": "refund" if refund.purpose == Refund.Purpose.REFUND else "payment",
        "sent_label": "Refund sent" if refund.purpose == Refund.Purpose.REFUND else "Sats sent",
        "refund": refund,
        "merchant": refund.merchant,
        "sats": format_sats(refund.amount_msat // 1000),
        "msat": refund.amount_msat,
        "fiat": format_fiat(refund.fiat_amount, refund.currency)
        if refund.fiat_amount is not None
        else "",
        "lnurl": lnurl,
        "qr_svg": lightning_qr_svg(lnurl, "QR code of the refund (LNURL-withdraw)")
        if lnurl
        else "",
        "error": error,
        "retry_note": refund.failure_reason if refund.state == Refund.State.CLAIMABLE else "",
    }
    response = render(request, "refunds/claim.html", context, status=status)
    response["Cache-Control"] = "no-store"
    return _with_csp(response)


def _lnurl_error(status: int, reason: str) -> JsonResponse:
    return JsonResponse({"status": "ERROR", "reason": reason}, status=status)


@require_GET
def lnurl_withdraw(request, token):
    """LUD-03, first step: the withdraw request (exactly the refund's amount)."""
    try:
        refund = services.claimable(token)
    except services.ClaimError as exc:
        return _lnurl_error(exc.status, str(exc))
    return JsonResponse(
        {
            "tag": "withdrawRequest",
            "callback": withdraw_callback_url(refund),
            "k1": token,
            "defaultDescription": f"{'Refund' if refund.purpose == 'refund' else 'Withdrawal'} "
            f"{refund.public_id} from {refund.merchant.name}",
            "minWithdrawable": refund.amount_msat,
            "maxWithdrawable": refund.amount_msat,
        }
    )


@require_GET
def lnurl_withdraw_callback(request, token):
    """LUD-03, second step: `?k1=...&pr=<invoice>`; OK once the claim is taken, then the
    gateway pays (LUD-03: the service answers, then attempts the payment)."""
    if request.GET.get("k1") != token:
        return _lnurl_error(400, "k1 does not match this withdraw request.")
    invoice = request.GET.get("pr", "")
    if not invoice:
        return _lnurl_error(400, "pr (the invoice to pay) is missing.")
    try:
        services.claim(token, invoice)
    except services.ClaimError as exc:
        return _lnurl_error(exc.status, str(exc))
    return JsonResponse({"status": "OK"})
