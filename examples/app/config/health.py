"""GET /health/: is the app able to reach its database and Redis?"""

import time

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


def _check_database() -> dict:
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure means unreachable
        return {"reachable": False, "error": exc.__class__.__name__}
    return {"reachable": True, "vendor": connection.vendor,
            "ms": round((time.monotonic() - started) * 1000, 1)}


def _check_redis() -> dict:
    started = time.monotonic()
    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2,
                                      socket_timeout=2)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means unreachable
        return {"reachable": False, "error": exc.__class__.__name__}
    return {"reachable": True, "ms": round((time.monotonic() - started) * 1000, 1)}


@never_cache
@require_GET
def health(request):
    checks = {"database": _check_database(), "redis": _check_redis()}
    healthy = all(check["reachable"] for check in checks.values())
    body = {"status": "ok" if healthy else "unavailable", **checks,
            "release": getattr(settings, "RELEASE_ID", None)}
    return JsonResponse(body, status=200 if healthy else 503)
