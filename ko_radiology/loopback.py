"""An ASGI app (FastAPI) served by uvicorn in a background thread on a loopback port: the stand-in judge, the bench's
stub and the test stand-ins all run this way.

    with LoopbackServer(app) as server:     # port 0: a free one, chosen when the socket is bound
        server.root                         # http://127.0.0.1:PORT

The socket is bound before the thread starts and the context is entered only once uvicorn serves, so a client may
call at once; leaving it stops the server without waiting for requests still in flight (a held or endless one).
"""

import socket
import threading
import time

import uvicorn

START_TIMEOUT_S = 30.0


class LoopbackServer:
    def __init__(self, app, port: int = 0):
        # proto named: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say TCP, and h11 writes a response's
        # head and body apart, so a socket made with proto 0 waits out the client's 40 ms delayed ACK on every reply
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", port))
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(app, log_level="critical", access_log=False, lifespan="off", backlog=128)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the loopback server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.should_exit = self._server.force_exit = True
        self._thread.join()
        self._socket.close()
