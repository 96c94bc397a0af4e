"""The merchant's account API (`/api/merchant/...`): thin views over merchants.services."""

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from checkout.views import MerchantView  # reads with any key, writes with an admin key
from config.problems import Problem, problems

from . import serializers as s
from . import services


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class MeView(MerchantView):
    @extend_schema(responses=s.MerchantAccount, summary="The merchant this API key belongs to")
    def get(self, request):
        body = services.account(request.merchant, request.auth)
        return Response(s.MerchantAccount(body).data)


class QuickstartView(MerchantView):
    @extend_schema(
        responses=s.Quickstart,
        summary="What to do next, with this deployment's URLs",
    )
    def get(self, request):
        return Response(s.Quickstart(services.quickstart(request.merchant)).data)


class NwcConnectionView(MerchantView):
    @extend_schema(responses=s.NwcConnectionStatus, summary="The saved NWC connection")
    def get(self, request):
        return Response(s.NwcConnectionStatus(services.nwc_status(request.merchant)).data)

    @extend_schema(
        request=s.NwcConnectionRequest,
        responses={200: s.NwcConnectionStatus, 201: s.NwcConnectionStatus},
        summary="Save (or replace) the NWC connection",
        description="Checked as a NIP-47 URI and stored encrypted; the secret is never shown "
        "again. " + services.NWC_USE,
    )
    def put(self, request):
        data = _valid(s.NwcConnectionRequest, request.data)
        body, created = services.save_nwc_connection(request.merchant, data["nwcConnectionString"])
        return Response(
            s.NwcConnectionStatus(body).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(
        responses={204: None, **problems(404, d404="No NWC connection is saved.")},
        summary="Forget the NWC connection",
    )
    def delete(self, request):
        if not services.remove_nwc_connection(request.merchant):
            raise Problem(404, "not_found", "this merchant has no saved NWC connection")
        return Response(status=status.HTTP_204_NO_CONTENT)


class PaymentProviderView(MerchantView):
    @extend_schema(responses=s.PaymentProvider, summary="The provider payments go through")
    def get(self, request):
        return Response(s.PaymentProvider(services.payment_provider(request.merchant)).data)

    @extend_schema(
        request=s.PaymentProviderRequest,
        responses={
            200: s.PaymentProvider,
            **problems(409, d409="provider_fixed: only the operator's node can be chosen."),
        },
        summary="Choose the payment provider (only the gateway's own node)",
    )
    def put(self, request):
        data = _valid(s.PaymentProviderRequest, request.data)
        body = services.set_payment_provider(request.merchant, data["provider"])
        return Response(s.PaymentProvider(body).data)
