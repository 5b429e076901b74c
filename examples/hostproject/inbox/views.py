"""The host's own upload code: nothing Mediacache-specific but the short_url it returns."""

from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from .models import Attachment

UPLOADS = Counter("inbox_uploads", "Attachments uploaded through the inbox")


@csrf_exempt
def upload(request):
    UPLOADS.inc()
    file = request.FILES["file"]
    attachment = Attachment(name=file.name, content_type=file.content_type)
    attachment.upload.save(file.name, file, save=False)
    attachment.save()
    return JsonResponse({"id": attachment.pk, "short_url": attachment.short_url}, status=201)


@csrf_exempt
def import_rows(request):
    """A route of the host's that takes big bodies (a bulk import): its own business,
    not limited by the engine. Reads the stream, so Django's in-memory cap does not apply."""
    size = 0
    while chunk := request.read(64 * 1024):
        size += len(chunk)
    return JsonResponse({"bytes": size})


def metrics(request):
    """The host's own /metrics, as django-prometheus serves it: prometheus_client's
    default registry, which holds the engine's metrics too."""
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
