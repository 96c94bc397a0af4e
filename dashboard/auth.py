"""Who may use the merchant site: a signed-in staff user of one merchant (`MerchantUser`).

Every view takes the merchant from the signed-in user, never from the URL, and looks rows
up within it, so another merchant's id in a URL finds nothing (a 404).
"""

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.shortcuts import render

from checkout.selectors import merchant_of


def merchant_required(view):
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), "dashboard:login")
        merchant = merchant_of(request.user)
        if merchant is None or not request.user.is_active:
            # The operator (a superuser with no merchant) uses /admin/.
            return render(request, "dashboard/no_merchant.html", status=403)
        request.merchant = merchant
        return view(request, *args, **kwargs)

    return wrapped
