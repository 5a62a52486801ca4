"""Views that tell Customer.io what happened, with the module-level API of Segment's analytics-python."""

from __future__ import annotations

import json
import uuid

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

import analytics_cio as analytics

ANONYMOUS_ID = "analytics_anonymous_id"


def visitor(request: HttpRequest) -> tuple[str | None, str]:
    """Who did it, for analytics: the signed-in user's id (None for a visitor), and the visitor's anonymous id.

    Never ``str(request.user.pk)`` alone: for everyone who is not signed in that is ``"None"``, one Customer.io
    person for all of them. The anonymous id lives in the session, so what a visitor does before signing up is
    linked to them by the ``identify`` that carries it.
    """
    anonymous_id: str = request.session.setdefault(ANONYMOUS_ID, uuid.uuid4().hex)
    user_id = str(request.user.pk) if request.user.is_authenticated else None
    return user_id, anonymous_id


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
    _, anonymous_id = visitor(request)
    # The anonymous id links what this visitor did before signing up (the guest order below) to the new person.
    analytics.identify(user_id, {"email": email, "plan": plan}, anonymous_id=anonymous_id)
    analytics.track(user_id, "Signed Up", {"plan": plan})
    return JsonResponse({"id": user_id}, status=201)


@csrf_exempt
@require_POST
def order(request: HttpRequest) -> HttpResponse:
    """An order, by a signed-in customer or as a guest."""
    body = _body(request)
    user_id, anonymous_id = visitor(request)
    analytics.track(user_id, "Order Completed",
                    {"order_id": body.get("order_id"), "total": body.get("total"), "currency": "EUR"},
                    anonymous_id=anonymous_id)
    return JsonResponse({"ok": True}, status=201)
