"""The host's own upload code: nothing Mediacache-specific but the short_url it returns."""

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from .models import Attachment


@csrf_exempt
def upload(request):
    file = request.FILES["file"]
    attachment = Attachment(name=file.name, content_type=file.content_type)
    attachment.upload.save(file.name, file, save=False)
    attachment.save()
    return JsonResponse({"id": attachment.pk, "short_url": attachment.short_url}, status=201)
