from django.urls import path

from . import views

urlpatterns = [
    path("api/health", views.health, name="health"),
    path("api/dev/pay", views.DevPayView.as_view(), name="dev-pay"),
]
