from django.urls import path, re_path

from .views import challenges, keys, manifests, proxies, proxy_request, resources

PROXY = r"^l402/proxy/(?P<proxy_id>[-\w]+)/"

urlpatterns = [
    path("api/l402/challenges", challenges.ChallengesView.as_view(), name="l402-challenges"),
    path("api/l402/challenges/verify", challenges.VerifyView.as_view(), name="l402-verify"),
    path("api/l402/demo", resources.DemoView.as_view(), name="l402-demo"),
    path("api/l402/premium-data", resources.PremiumDataView.as_view(), name="l402-premium-data"),
    path("l402/test/ping", resources.PingView.as_view(), name="l402-test-ping"),
    path("api/l402/pricing", resources.PricingView.as_view(), name="l402-pricing"),
    path("api/l402/status", resources.StatusView.as_view(), name="l402-status"),
    path("api/l402/content", resources.ContentListView.as_view(), name="l402-content"),
    path("api/l402/content/bundle", resources.BundleView.as_view(), name="l402-content-bundle"),
    path(
        "api/l402/content/<slug:slug>",
        resources.ContentDetailView.as_view(),
        name="l402-content-item",
    ),
    path("api/stats/l402", challenges.StatsView.as_view(), name="l402-stats"),
    path(
        "api/stats/downloads", challenges.DownloadStatsView.as_view(), name="l402-stats-downloads"
    ),
    path("api/proxy", proxies.ProxyListView.as_view(), name="l402-proxies"),
    path("api/proxy/<slug:proxy_id>", proxies.ProxyDetailView.as_view(), name="l402-proxy"),
    path(
        "api/proxy/<slug:proxy_id>/unpublish",
        proxies.UnpublishView.as_view(),
        name="l402-proxy-unpublish",
    ),
    path(
        "api/proxy/<slug:proxy_id>/manifest/endpoints",
        proxies.EndpointsView.as_view(),
        name="l402-proxy-endpoints",
    ),
    path(
        "api/proxy/<slug:proxy_id>/manifest/endpoints/<slug:endpoint_id>",
        proxies.EndpointDetailView.as_view(),
        name="l402-proxy-endpoint",
    ),
    path(
        "api/proxy/<slug:proxy_id>/manifest/settings",
        proxies.ManifestSettingsView.as_view(),
        name="l402-proxy-manifest-settings",
    ),
    path("api/invoice", keys.OneTimeKeyView.as_view(), name="l402-one-time-key"),
    path("api/manifests/registry", manifests.RegistryView.as_view(), name="l402-registry"),
    path("api/manifests/validate", manifests.ValidateManifestView.as_view(), name="l402-validate"),
    path("api/manifests/schema.json", manifests.ManifestSchemaView.as_view(), name="l402-schema"),
    path("api/mcp/version-check", manifests.VersionCheckView.as_view(), name="mcp-version-check"),
    re_path(
        PROXY + r"\.well-known/l402-manifest\.json\Z",
        proxies.ProxyManifestView.as_view(),
        name="l402-proxy-manifest",
    ),
    re_path(
        PROXY + r"openapi\.json\Z", proxies.ProxyOpenApiView.as_view(), name="l402-proxy-openapi"
    ),
    re_path(
        PROXY + r"api/invoice\Z",
        proxy_request.GraphqlInvoiceView.as_view(),
        name="l402-proxy-graphql-invoice",
    ),
    # Any character (also a newline): l402.paths refuses what it must with a clear 400.
    re_path(
        PROXY + r"(?P<path>(?s:.*))\Z",
        proxy_request.ProxyRequestView.as_view(),
        name="l402-proxy-request",
    ),
]
