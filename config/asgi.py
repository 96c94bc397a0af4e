"""The ASGI application every web process serves: HTTP and WebSockets in one process.

HTTP goes to Django's WSGI handler on a thread pool (config.wsgi_bridge): the views and
middleware are synchronous, and Django's own ASGI handler hops threads several times per
request, which halved the throughput we measured (see README, Production). WebSockets go to
Channels consumers on the event loop (realtime.push)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Django's WSGI application, set up as config.wsgi sets it up (webhooks sent from this
# process), before the routes import models.
from config.wsgi import application as django_wsgi  # noqa: E402

# isort: split
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from config.routing import websocket_urlpatterns  # noqa: E402
from config.wsgi_bridge import WsgiOnThreads  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": WsgiOnThreads(django_wsgi, threads=settings.WEB_THREADS),
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
