from django.urls import path

from . import views

urlpatterns = [
    path("api/agents", views.AgentListView.as_view(), name="agents-list"),
    path("api/agents/register", views.RegisterView.as_view(), name="agents-register"),
    path("api/agents/challenge", views.ChallengeView.as_view(), name="agents-challenge"),
    path("api/agents/verify", views.VerifyView.as_view(), name="agents-verify"),
    path("api/agents/capabilities", views.CapabilitiesView.as_view(), name="agents-capabilities"),
    path(
        "api/agents/capabilities/<path:service_id>",
        views.CapabilityDetailView.as_view(),
        name="agents-capability",
    ),
    path("api/agents/requests", views.RequestsView.as_view(), name="agents-requests"),
    path("api/agents/agreements", views.AgreementsView.as_view(), name="agents-agreements"),
    path(
        "api/agents/agreements/<str:agreement_id>/complete",
        views.CompleteAgreementView.as_view(),
        name="agents-agreement-complete",
    ),
    path(
        "api/agents/agreements/<str:agreement_id>/cancel",
        views.CancelAgreementView.as_view(),
        name="agents-agreement-cancel",
    ),
    path("api/agents/attestations", views.AttestationsView.as_view(), name="agents-attestations"),
    path("api/agents/<str:pubkey>", views.AgentDetailView.as_view(), name="agents-detail"),
    path("api/agents/<str:pubkey>/stats", views.AgentStatsView.as_view(), name="agents-stats"),
]
