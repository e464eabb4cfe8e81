"""Print what the deploy needs to know of a Django project's settings, as one JSON line.

Run by the app role inside `manage.py shell` of a release (through bin/manage-release, as the
app user, with the app's environment): where the project keeps its static and media files,
and how its user model names users. Under a URL prefix (SCRIPT_NAME in the app's environment,
app_url_prefix), the URLs are read as a request under that prefix would see them: Django puts
the prefix before a relative STATIC_URL or MEDIA_URL (such as "static/").
"""

import json
import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.urls import set_script_prefix

if os.environ.get("SCRIPT_NAME"):
    set_script_prefix(os.environ["SCRIPT_NAME"].rstrip("/") + "/")


def text(value):
    return "" if value is None else str(value)


def static_dirs():
    """STATICFILES_DIRS entries are paths or (prefix, path) pairs."""
    dirs = []
    for entry in getattr(settings, "STATICFILES_DIRS", None) or []:
        if isinstance(entry, (list, tuple)):
            entry = entry[1]
        dirs.append(text(entry))
    return dirs


def user_model():
    users = get_user_model()
    username_field = users.USERNAME_FIELD
    email_field = getattr(users, "EMAIL_FIELD", "email")
    try:
        users._meta.get_field(email_field)
    except FieldDoesNotExist:
        email_field = ""
    try:
        is_email = isinstance(users._meta.get_field(username_field), models.EmailField)
    except FieldDoesNotExist:
        is_email = False
    return {
        "username_field": username_field,
        "username_is_email": is_email or username_field == email_field,
        "email_field": email_field,
        "has_email": bool(email_field),
    }


print("SLIPWAY-DJANGO " + json.dumps({
    "static_root": text(settings.STATIC_ROOT),
    "static_url": text(settings.STATIC_URL),
    "media_root": text(settings.MEDIA_ROOT),
    "media_url": text(settings.MEDIA_URL),
    "staticfiles_dirs": static_dirs(),
    **user_model(),
}))
