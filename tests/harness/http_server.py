"""A small HTTP server on 127.0.0.1 for download tests: files, redirects, ranges, and a drop mid-body."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FileServer:
    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.redirects: dict[str, str] = {}
        self.drop_after: dict[str, int] = {}  # path -> bytes sent before closing (once)
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                if self.path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[self.path])
                    self.end_headers()
                    return
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range", "").startswith("bytes="):
                    start = int(self.headers["Range"][6:].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = server.drop_after.pop(self.path, None)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.connection.close()
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class TrickleServer:
    """A hostile HTTP peer on 127.0.0.1: reads each request whole, sends `head` at once, then `answer` one
    byte every `interval` seconds, starting over when it is done (so it never ends; `repeat=False` sends it
    once), or nothing at all (`hang`). `pieces` (bytes per write) makes it a slow but steady server instead.
    `requests` holds each request's (head, body); `received` is set on each. Stopped on exit: its threads
    end and every connection is closed."""

    def __init__(self, answer: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n", interval: float = 0.2,
                 pieces: int = 1, repeat: bool = True, hang: bool = False, head: bytes = b""):
        import socket

        self.head = head
        self.answer, self.interval, self.pieces, self.repeat, self.hang = answer, interval, pieces, repeat, hang
        self.requests: list[tuple[bytes, bytes]] = []
        self.received = threading.Event()
        self.stopped = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._threads: list[threading.Thread] = []
        self._conns: list = []

    def __enter__(self) -> TrickleServer:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.sock.close()
        for conn in list(self._conns):
            try:
                conn.close()
            except OSError:
                pass
        for thread in self._threads:
            thread.join(10)

    def _accept(self) -> None:
        self.sock.settimeout(0.1)  # closing a listening socket does not wake accept(): look at `stopped` often
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn) -> None:
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(body) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                body += chunk
            self.requests.append((head, body))
            self.received.set()
            if self.hang:
                self.stopped.wait()
                return
            conn.sendall(self.head)
            while not self.stopped.is_set():
                for i in range(0, len(self.answer), self.pieces):
                    conn.sendall(self.answer[i:i + self.pieces])
                    if self.stopped.wait(self.interval):
                        return
                if not self.repeat:
                    return
        except OSError:
            pass
        finally:
            conn.close()
