from django.urls import path, re_path

from . import views

PROXY = r"^l402/proxy/(?P<proxy_id>[-\w]+)/"

urlpatterns = [
    path("api/l402/challenges", views.ChallengesView.as_view(), name="l402-challenges"),
    path("api/l402/challenges/verify", views.VerifyView.as_view(), name="l402-verify"),
    path("api/l402/demo", views.DemoView.as_view(), name="l402-demo"),
    path("api/l402/premium-data", views.PremiumDataView.as_view(), name="l402-premium-data"),
    path("api/l402/pricing", views.PricingView.as_view(), name="l402-pricing"),
    path("api/l402/status", views.StatusView.as_view(), name="l402-status"),
    path("api/l402/content", views.ContentListView.as_view(), name="l402-content"),
    path("api/l402/content/bundle", views.BundleView.as_view(), name="l402-content-bundle"),
    path(
        "api/l402/content/<slug:slug>", views.ContentDetailView.as_view(), name="l402-content-item"
    ),
    path("api/stats/l402", views.StatsView.as_view(), name="l402-stats"),
    path("api/proxy", views.ProxyListView.as_view(), name="l402-proxies"),
    path("api/proxy/<slug:proxy_id>", views.ProxyDetailView.as_view(), name="l402-proxy"),
    path(
        "api/proxy/<slug:proxy_id>/unpublish",
        views.UnpublishView.as_view(),
        name="l402-proxy-unpublish",
    ),
    path(
        "api/proxy/<slug:proxy_id>/manifest/endpoints",
        views.EndpointsView.as_view(),
        name="l402-proxy-endpoints",
    ),
    path(
        "api/proxy/<slug:proxy_id>/manifest/endpoints/<slug:endpoint_id>",
        views.EndpointDetailView.as_view(),
        name="l402-proxy-endpoint",
    ),
    path(
        "api/proxy/<slug:proxy_id>/manifest/settings",
        views.ManifestSettingsView.as_view(),
        name="l402-proxy-manifest-settings",
    ),
    path("api/invoice", views.OneTimeKeyView.as_view(), name="l402-one-time-key"),
    path("api/manifests/registry", views.RegistryView.as_view(), name="l402-registry"),
    path("api/manifests/validate", views.ValidateManifestView.as_view(), name="l402-validate"),
    path("api/manifests/schema.json", views.ManifestSchemaView.as_view(), name="l402-schema"),
    path("api/mcp/version-check", views.VersionCheckView.as_view(), name="mcp-version-check"),
    re_path(
        PROXY + r"\.well-known/l402-manifest\.json\Z",
        views.ProxyManifestView.as_view(),
        name="l402-proxy-manifest",
    ),
    re_path(
        PROXY + r"openapi\.json\Z", views.ProxyOpenApiView.as_view(), name="l402-proxy-openapi"
    ),
    # Any character (also a newline): l402.paths refuses what it must with a clear 400.
    re_path(
        PROXY + r"(?P<path>(?s:.*))\Z", views.ProxyRequestView.as_view(), name="l402-proxy-request"
    ),
]
