from django.urls import path

from . import views

app_name = "ops"

urlpatterns = [
    path("", views.index, name="index"),
    path("upload/", views.upload, name="upload"),
    path("stats.json", views.stats_json, name="stats"),
]
