"""The chunked upload protocol's two addresses (healthagent.cohort.uploads): JSON in, JSON out, for researchers and
admins; each upload is its owner's alone."""

import json

from django.http import JsonResponse
from django.views.decorators.http import require_http_methods, require_POST

from healthagent.cohort.uploads import (
    CHUNK_BYTES,
    OffsetMismatch,
    UploadError,
    access_upload,
    upload_append,
    upload_create,
)
from healthagent.roles import Role, role_required

UPLOAD_ROLES = (Role.RESEARCHER, Role.ADMIN)


def _state(upload) -> dict:
    return {
        "id": str(upload.pk),
        "offset": upload.received_bytes,
        "size": upload.size_bytes,
        "chunk_bytes": CHUNK_BYTES,
    }


@role_required(*UPLOAD_ROLES)
@require_POST
def uploads_create(request):
    try:
        asked = json.loads(request.body or b"{}")
        upload = upload_create(
            owner=request.user, size_bytes=int(asked.get("size", 0)), suffix=str(asked.get("suffix", ""))
        )
    except (ValueError, TypeError):
        return JsonResponse({"error": 'send {"size": bytes, "suffix": ".csv"} as JSON'}, status=400)
    except UploadError as error:
        return JsonResponse({"error": str(error)}, status=400)
    return JsonResponse(_state(upload), status=201)


@role_required(*UPLOAD_ROLES)
@require_http_methods(["GET", "PUT"])
def upload_detail(request, upload_id: str):
    """GET: how many bytes the server holds. PUT ?offset=N: append the body there (409 with the offset if N is not
    it, so the client carries on from what arrived)."""
    try:
        if request.method == "GET":
            return JsonResponse(_state(access_upload(upload_id=upload_id, owner=request.user)))
        offset = int(request.GET.get("offset", "-1"))
        upload = upload_append(upload_id=upload_id, owner=request.user, offset=offset, data=request.body)
    except ValueError:
        return JsonResponse({"error": "offset must be a whole number"}, status=400)
    except OffsetMismatch as mismatch:
        return JsonResponse({"error": str(mismatch), "offset": mismatch.offset}, status=409)
    except UploadError as error:
        return JsonResponse({"error": str(error)}, status=404 if "no such upload" in str(error) else 400)
    return JsonResponse(_state(upload))
