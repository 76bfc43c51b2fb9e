import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "healthagent.settings")
application = get_wsgi_application()
# Every view module (and through them the modeling code with torch) imported now, as the worker boots, not by its first
# request: measured under `make loadtest`, that first request held a few CPU-seconds of imports per worker (issue 27).
get_resolver().url_patterns  # noqa: B018 - the attribute's access is the import
