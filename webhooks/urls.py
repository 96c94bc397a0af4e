from django.urls import path

from . import views

urlpatterns = [
    path("api/webhooks", views.EndpointListView.as_view(), name="webhooks"),
    path(
        "api/webhooks/default-secret",
        views.DefaultSecretView.as_view(),
        name="webhooks-default-secret",
    ),
    path(
        "api/webhooks/default-secret/rotate",
        views.RotateDefaultSecretView.as_view(),
        name="webhooks-default-secret-rotate",
    ),
    path("api/webhooks/<str:endpoint_id>", views.EndpointDetailView.as_view(), name="webhook"),
    path(
        "api/webhooks/<str:endpoint_id>/rotate-secret",
        views.RotateSecretView.as_view(),
        name="webhook-rotate-secret",
    ),
    path("api/webhooks/<str:endpoint_id>/test", views.TestEventView.as_view(), name="webhook-test"),
    path(
        "api/webhooks/<str:endpoint_id>/deliveries",
        views.DeliveryListView.as_view(),
        name="webhook-deliveries",
    ),
    path(
        "api/webhooks/<str:endpoint_id>/deliveries/<str:delivery_id>",
        views.DeliveryDetailView.as_view(),
        name="webhook-delivery",
    ),
    path(
        "api/webhooks/<str:endpoint_id>/deliveries/<str:delivery_id>/redeliver",
        views.RedeliverView.as_view(),
        name="webhook-redeliver",
    ),
]
