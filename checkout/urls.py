from django.urls import include, path

urlpatterns = [
    path("", include("checkout.page_urls")),
]
