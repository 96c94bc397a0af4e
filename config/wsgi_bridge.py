"""Django's WSGI handler under an ASGI server, one thread hop per request.

The views, middleware and ORM are synchronous. Django's own ASGI handler runs them through
several sync/async hops per request and halved our throughput; a2wsgi hops for every read
and write of the body. Here the body is read on the event loop, the whole WSGI call runs on
a thread of a pool (where Django keeps its database connection between requests, as
under a threaded WSGI server), and the response goes back in one send per chunk.
A streamed response (StreamingHttpResponse) is sent chunk by chunk as the thread makes it.
"""

from __future__ import annotations

import asyncio
import io
import sys
from concurrent.futures import ThreadPoolExecutor

# Bodies larger than this are refused before they are read (nginx's sample allows 2 MB; the
# API's own limit, DATA_UPLOAD_MAX_MEMORY_SIZE, answers its 413 problem below this).
MAX_BODY_BYTES = 16 * 1024 * 1024
_END = object()


class WsgiOnThreads:
    def __init__(self, app, threads: int):
        self.app = app
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="http")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"WsgiOnThreads serves http, not {scope['type']}")
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > MAX_BODY_BYTES:
                await _send_simple(send, 413, b"Request body too large")
                return
            if not message.get("more_body", False):
                break
        environ = _environ(scope, bytes(body))
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        future = loop.run_in_executor(self.pool, self._run, environ, loop, queue)
        started = False
        while True:
            item = await queue.get()
            if item is _END:
                break
            kind, value = item
            if kind == "start":
                started = True
                await send(value)
            else:
                await send({"type": "http.response.body", "body": value, "more_body": True})
        error = await future
        if error is not None and not started:
            await _send_simple(send, 500, b"Internal Server Error")
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _run(self, environ, loop, queue):
        """On a pool thread: the WSGI call; what it makes goes to the loop via `queue`."""

        def put(item):
            loop.call_soon_threadsafe(queue.put_nowait, item)

        response = []  # [(status, headers)] once start_response was called

        def start_response(status, headers, exc_info=None):
            if exc_info and sent_start:
                raise exc_info[1].with_traceback(exc_info[2])
            response[:] = [(int(status.split(" ", 1)[0]), headers)]

        sent_start = False
        result = None
        try:
            result = self.app(environ, start_response)
            for chunk in result:
                if not sent_start:
                    put(("start", _start(*response[0])))
                    sent_start = True
                if chunk:
                    put(("body", chunk))
            if not sent_start:
                put(("start", _start(*response[0])))
            return None
        except Exception as exc:  # Django answers its own errors; this is the server's
            sys.stderr.write(f"WSGI application error: {exc!r}\n")
            return exc
        finally:
            if hasattr(result, "close"):
                result.close()
            put(_END)


def _start(status: int, headers) -> dict:
    return {
        "type": "http.response.start",
        "status": status,
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
    }


async def _send_simple(send, status: int, text: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(text))],
        }
    )
    await send({"type": "http.response.body", "body": text})


def _environ(scope, body: bytes) -> dict:
    server = scope.get("server") or ("127.0.0.1", 80)
    client = scope.get("client") or ("", 0)
    root_path = scope.get("root_path", "")
    path = scope["path"]
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root_path.encode("utf-8").decode("latin-1"),
        "PATH_INFO": path.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1] if server[1] is not None else 80),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "REMOTE_ADDR": client[0],
        "REMOTE_PORT": str(client[1]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        if name == "CONTENT_TYPE" or name == "CONTENT_LENGTH":
            key = name
        else:
            key = "HTTP_" + name
        if key in environ:  # a repeated header: one value, as WSGI servers join them
            value = environ[key] + ("; " if key == "HTTP_COOKIE" else ",") + value
        environ[key] = value
    if "CONTENT_LENGTH" not in environ and body:
        environ["CONTENT_LENGTH"] = str(len(body))
    return environ
