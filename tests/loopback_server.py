"""A threaded HTTP server on a free loopback port, started and stopped as a context manager: the common part of the
test stand-ins (Hub, Batch API), which differ only in their request handler.

    class MyStandin(LoopbackServer):
        def handler_class(self) -> type[BaseHTTPRequestHandler]: ...

    with MyStandin() as server:
        server.root   # http://127.0.0.1:PORT
"""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackServer:
    def __init__(self):
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
