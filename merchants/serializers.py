from rest_framework import serializers

from config.serializers import StrictJsonTypes


class NwcConnectionRequest(StrictJsonTypes, serializers.Serializer):
    nwcConnectionString = serializers.CharField(
        max_length=2000,
        help_text="A NIP-47 URI: nostr+walletconnect://<wallet pubkey>?relay=wss://...&secret="
        "<64 hex>[&lud16=name@domain].",
    )


class NwcConnectionStatus(serializers.Serializer):
    connected = serializers.BooleanField()
    walletPubkey = serializers.CharField(required=False)
    relays = serializers.ListField(child=serializers.CharField(), required=False)
    lud16 = serializers.CharField(required=False, allow_null=True)
    connectedAt = serializers.DateTimeField(required=False)
    updatedAt = serializers.DateTimeField(required=False)
    usage = serializers.CharField(help_text="What the connection is used for today.")


class PaymentProviderRequest(StrictJsonTypes, serializers.Serializer):
    provider = serializers.CharField(max_length=40)


class PaymentProvider(serializers.Serializer):
    provider = serializers.CharField()
    description = serializers.CharField()
    availableProviders = serializers.ListField(child=serializers.CharField())
    changeable = serializers.BooleanField()
    hasNwcConnection = serializers.BooleanField()
    message = serializers.CharField()


class QuickstartStep(serializers.Serializer):
    stepNumber = serializers.IntegerField()
    title = serializers.CharField()
    description = serializers.CharField()
    isCompleted = serializers.BooleanField()
    isRequired = serializers.BooleanField()
    method = serializers.CharField(allow_null=True)
    url = serializers.CharField(allow_null=True)
    docsUrl = serializers.CharField()


class Quickstart(serializers.Serializer):
    completedSteps = serializers.IntegerField()
    totalSteps = serializers.IntegerField()
    requiredStepsCompleted = serializers.IntegerField()
    requiredStepsTotal = serializers.IntegerField()
    isReadyForProduction = serializers.BooleanField()
    nextStep = serializers.IntegerField(allow_null=True)
    baseUrl = serializers.CharField()
    steps = QuickstartStep(many=True)


class _ApiKey(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.CharField()
    prefix = serializers.CharField()


class _Features(serializers.Serializer):
    checkoutEnabled = serializers.BooleanField()
    l402Enabled = serializers.BooleanField()
    agentsEnabled = serializers.BooleanField()
    shopifyEnabled = serializers.BooleanField()
    walletEnabled = serializers.BooleanField()


class _Onboarding(serializers.Serializer):
    hasNwcConnection = serializers.BooleanField()
    hasStrikeKey = serializers.BooleanField()
    hasOpenNodeKey = serializers.BooleanField()
    hasLightningNode = serializers.BooleanField()
    isFullyConfigured = serializers.BooleanField()
    productCount = serializers.IntegerField()
    proxyCount = serializers.IntegerField()
    hasActiveProxy = serializers.BooleanField()
    webhookEndpointCount = serializers.IntegerField()
    verifiedAgentCount = serializers.IntegerField()


class MerchantAccount(serializers.Serializer):
    merchantId = serializers.CharField()
    name = serializers.CharField()
    email = serializers.CharField(allow_blank=True)
    createdAt = serializers.DateTimeField()
    isActive = serializers.BooleanField()
    planTier = serializers.CharField()
    subscriptionStatus = serializers.CharField()
    paymentProvider = serializers.CharField()
    apiKey = _ApiKey()
    balanceMsat = serializers.IntegerField()
    features = _Features()
    onboarding = _Onboarding()
