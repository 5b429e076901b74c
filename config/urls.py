from django.contrib import admin
from django.urls import include, path

from chat.api import api
from chat.webhooks import evolution_webhook

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("ops/", include("ops.urls")),
    path("webhooks/evolution/", evolution_webhook, name="evolution-webhook"),
    path("webhooks/evolution/<str:secret>/", evolution_webhook, name="evolution-webhook-secret"),
]
