"""A FastAPI app with ``AsyncClient``: built in the app's lifespan, shut down with it, never blocking the loop.

    CUSTOMERIO_SITE_ID=... CUSTOMERIO_API_KEY=... uvicorn examples.fastapi_app:app
    curl -X POST localhost:8000/signup -H 'Content-Type: application/json' -d '{"email": "ada@example.com"}'

Set CUSTOMERIO_HOST=http://127.0.0.1:8080 to send to a local Customer.io (`analytics-cio serve`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request

from analytics_cio import AsyncClient


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # One client per process, for the app's whole life. Leaving the block shuts it down: what is queued is
    # delivered (or reported) within shutdown_timeout, awaited without blocking the loop.
    async with AsyncClient(os.environ.get("CUSTOMERIO_SITE_ID"), os.environ.get("CUSTOMERIO_API_KEY"),
                           host=os.environ.get("CUSTOMERIO_HOST")) as analytics:
        app.state.analytics = analytics
        yield


app = FastAPI(lifespan=lifespan)


def user_id_for(email: str) -> str:
    """Your database's primary key in a real app; here one derived from the email."""
    return "u-" + hashlib.sha256(email.lower().encode()).hexdigest()[:12]


@app.post("/signup", status_code=201)
async def signup(body: dict[str, Any], request: Request) -> dict[str, str]:
    email = body.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise HTTPException(400, "email is required")
    analytics: AsyncClient = request.app.state.analytics
    user_id = user_id_for(email)
    # The calls only queue the message (microseconds): no await, and nothing waits for Customer.io.
    analytics.identify(user_id, {"email": email, "plan": body.get("plan", "trial")})
    analytics.track(user_id, "Signed Up", {"plan": body.get("plan", "trial")})
    return {"id": user_id}


@app.post("/account/delete")
async def delete_account(body: dict[str, Any], request: Request) -> dict[str, bool]:
    analytics: AsyncClient = request.app.state.analytics
    analytics.track(user_id_for(str(body.get("email"))), "Account Deleted")
    # Where the answer must say the event went out, await the flush: other requests are served meanwhile.
    return {"delivered": await analytics.flush(timeout=5)}
