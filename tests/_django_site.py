"""The Django URLconf and views of tests/test_contrib.py (imported by Django once it is configured)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path

import analytics_cio


def signup(request: HttpRequest) -> HttpResponse:
    email = request.POST["email"]
    analytics_cio.identify(email, {"plan": request.POST.get("plan", "trial")})
    analytics_cio.track(email, "Signed Up")
    return HttpResponse(status=201)


urlpatterns = [path("signup", signup)]
