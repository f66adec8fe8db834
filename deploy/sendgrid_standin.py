"""The SendGrid stand-in of the compose test: the test suite's own local SendGrid server
(tests/support/sendgrid_server.py, which checks requests as SendGrid documents them) run
as a container on the compose network.

That server listens on a free loopback port, for tests in one process. Here it is reached
from other containers, so a relay forwards the service port (3000) to it, and a second
port (3001) lets the test script read what it accepted:

    GET /recipients            {"counts": {address: messages}}
    GET /messages?to=ADDRESS   [{"subject", "text", "html"}] of the messages to ADDRESS

SENDGRID_STANDIN_DELAY (seconds) holds every answer that long, so a send lasts long enough
for the test to kill a mail worker in the middle of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.support.sendgrid_server import Fault, SendGridServer

API_PORT = 3000
INSPECT_PORT = 3001


def relay(port: int, target: tuple[str, int]) -> socketserver.ThreadingTCPServer:
    """Forward every connection on 0.0.0.0:port to target, both ways, byte for byte."""

    class Pipe(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            upstream = socket.create_connection(target)

            def pump(src: socket.socket, dst: socket.socket) -> None:
                try:
                    while data := src.recv(65536):
                        dst.sendall(data)
                except OSError:
                    pass
                finally:
                    for end in (src, dst):
                        with contextlib.suppress(OSError):
                            end.shutdown(socket.SHUT_RDWR)

            back = threading.Thread(target=pump, args=(upstream, self.request), daemon=True)
            back.start()
            pump(self.request, upstream)
            back.join()
            upstream.close()

    server = socketserver.ThreadingTCPServer(("0.0.0.0", port), Pipe)
    server.daemon_threads = True
    return server


def inspector(sendgrid: SendGridServer) -> ThreadingHTTPServer:
    class Inspect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/recipients":
                body: object = {"counts": dict(sendgrid.recipient_counts())}
            elif url.path == "/messages":
                address = parse_qs(url.query).get("to", [""])[0]
                body = [{"subject": getattr(m, "subject", None),
                         "text": getattr(m, "text", None),
                         "html": getattr(m, "html", None)}
                        for m in sendgrid.messages_for(address)]
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    return ThreadingHTTPServer(("0.0.0.0", INSPECT_PORT), Inspect)


def main() -> None:
    delay = float(os.environ.get("SENDGRID_STANDIN_DELAY", "0"))
    with SendGridServer(api_key=os.environ["SENDGRID_API_KEY"]) as sendgrid:
        if delay:
            sendgrid.on_request = lambda _received: Fault(delay=delay)
        threading.Thread(target=inspector(sendgrid).serve_forever, daemon=True).start()
        print(f"SendGrid stand-in on :{API_PORT} (delay {delay}s), inspect on "
              f":{INSPECT_PORT}", flush=True)
        relay(API_PORT, ("127.0.0.1", sendgrid.port)).serve_forever()


if __name__ == "__main__":
    main()
