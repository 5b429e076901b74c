from django.urls import path
from inbox import views

urlpatterns = [
    path("inbox/upload", views.upload),
    path("inbox/import", views.import_rows),
    path("metrics", views.metrics),
]
