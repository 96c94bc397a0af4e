"""The ASGI application every web process serves: HTTP and WebSockets in one process.

HTTP goes to Django's WSGI handler on a thread pool (a2wsgi): the views and middleware are
synchronous, and Django's own ASGI handler hops threads several times per request, which
halved the throughput we measured (see README, Production). WebSockets go to Channels
consumers on the event loop (realtime.push)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

django_wsgi = get_wsgi_application()  # sets Django up before the routes import models

from a2wsgi import WSGIMiddleware  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from config.routing import websocket_urlpatterns  # noqa: E402

_wsgi_on_threads = WSGIMiddleware(django_wsgi, workers=settings.WEB_THREADS)


async def http(scope, receive, send):
    """a2wsgi hands the server's `receive` and `send` to its loop as coroutines; granian's
    are awaitables of another kind, so each call is wrapped in one."""

    async def receive_():
        return await receive()

    async def send_(message):
        return await send(message)

    await _wsgi_on_threads(scope, receive_, send_)


application = ProtocolTypeRouter(
    {
        "http": http,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
