"""The merchant API's view classes: any API key of the merchant reads, writes may need
its admin key."""

from rest_framework.views import APIView

from checkout.auth import AdminKeyRequired, ApiKeyAuthentication, InvoiceKeyRequired


class MerchantView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [InvoiceKeyRequired]


class AdminWritesView(MerchantView):
    """Reads with any key; writes need an admin key."""

    def get_permissions(self):
        if self.request.method in ("GET", "HEAD", "OPTIONS"):
            return [InvoiceKeyRequired()]
        return [AdminKeyRequired()]
