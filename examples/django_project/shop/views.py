"""Views that tell Customer.io what happened, with the module-level API of Segment's analytics-python."""

from __future__ import annotations

import json
import uuid

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

import analytics_cio as analytics


def _body(request: HttpRequest) -> dict[str, object]:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


@csrf_exempt  # an API endpoint for the example; keep CSRF protection for forms
@require_POST
def signup(request: HttpRequest) -> HttpResponse:
    body = _body(request)
    email = body.get("email")
    if not isinstance(email, str) or "@" not in email:
        return JsonResponse({"error": "email is required"}, status=400)
    user_id = f"u-{uuid.uuid5(uuid.NAMESPACE_URL, email.lower()).hex[:12]}"  # your user's primary key
    plan = body.get("plan", "trial")
    analytics.identify(user_id, {"email": email, "plan": plan})
    analytics.track(user_id, "Signed Up", {"plan": plan})
    return JsonResponse({"id": user_id}, status=201)


@csrf_exempt
@require_POST
def order(request: HttpRequest) -> HttpResponse:
    body = _body(request)
    analytics.track(str(body.get("user_id")), "Order Completed",
                    {"order_id": body.get("order_id"), "total": body.get("total"), "currency": "EUR"})
    return JsonResponse({"ok": True}, status=201)
