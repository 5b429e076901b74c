from django.urls import path
from inbox import views

urlpatterns = [path("inbox/upload", views.upload)]
