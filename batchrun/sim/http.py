"""HTTP/1.1 for the simulator: an asyncio protocol driving h11, with keep-alive and pipelining.

Handlers are synchronous and fast (the engine never blocks), so each request is answered as
soon as its body is complete and the next pipelined request is parsed from the same buffer.
The ``Answer`` says how to misbehave: ``abort`` resets the connection (``transport.abort()``),
``truncate_to`` sends the full ``Content-Length`` header but only part of the body, then closes.
"""

from __future__ import annotations

import asyncio
import logging

import h11

from .app import Answer, App, json_answer

log = logging.getLogger("batchrun.sim")

SERVER_HEADER = (b"server", b"batchrun-sim")


class HttpConnection(asyncio.Protocol):
    """One client connection."""

    def __init__(self, app: App, registry: set[HttpConnection]) -> None:
        self.app = app
        self.registry = registry
        self.transport: asyncio.Transport | None = None
        self.conn = h11.Connection(h11.SERVER)
        self.request: h11.Request | None = None
        self.body = bytearray()
        self.closed = False

    # -- asyncio callbacks ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.registry.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.registry.discard(self)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.conn.receive_data(data)
        self._process()

    def eof_received(self) -> bool | None:
        if not self.closed:
            self.conn.receive_data(b"")
            self._process()
        return None  # close our side too

    # -- request handling -----------------------------------------------------------------
    def _process(self) -> None:
        while not self.closed:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as error:
                self._bad_request(error.error_status_hint, str(error))
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self.request = event
                self.body = bytearray()
                if self._declared_length(event) > self.app.config.max_body_bytes:
                    self._bad_request(413, "request body too large")
                    return
                if self.conn.they_are_waiting_for_100_continue and self.transport is not None:
                    self.transport.write(self.conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
            elif isinstance(event, h11.Data):
                self.body += event.data
                if len(self.body) > self.app.config.max_body_bytes:
                    self._bad_request(413, "request body too large")
                    return
            elif isinstance(event, h11.EndOfMessage):
                self._respond()
            elif isinstance(event, h11.ConnectionClosed):
                self.close()
                return

    @staticmethod
    def _declared_length(request: h11.Request) -> int:
        for name, value in request.headers:
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return 0
        return 0

    def _respond(self) -> None:
        request = self.request
        assert request is not None
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in request.headers}
        method = request.method.decode("ascii", "replace")
        target = request.target.decode("latin-1")
        try:
            answer = self.app.handle(method, target, headers, bytes(self.body))
        except Exception:  # a bug in the simulator: answer 500 and keep serving
            log.exception("simulator failed on %s %s", method, target)
            answer = json_answer(500, {"error_message": "simulator bug (see log)"})
        self.request = None
        self.body = bytearray()
        self._send(answer)

    def _send(self, answer: Answer) -> None:
        transport = self.transport
        assert transport is not None
        if answer.abort:
            self.closed = True
            transport.abort()
            return
        conn = self.conn
        head = conn.send(h11.Response(status_code=answer.status, headers=[*answer.headers, SERVER_HEADER]))
        assert head is not None
        if answer.truncate_to is not None:
            transport.write(head)
            remaining = answer.truncate_to
            for chunk in answer.body:
                if remaining <= 0:
                    break
                transport.write(chunk[:remaining])
                remaining -= len(chunk)
            self.close()  # flushes what was written, then closes: the client sees a short body
            return
        parts = [head]
        for chunk in answer.body:
            data = conn.send(h11.Data(data=chunk))
            if data:
                parts.append(data)
        parts.append(conn.send(h11.EndOfMessage()) or b"")
        transport.write(b"".join(parts))
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            self.close()
        else:
            conn.start_next_cycle()

    def _bad_request(self, status: int, message: str) -> None:
        """Answer a malformed request (when still possible) and close the connection."""
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            answer = json_answer(status, {"error_message": f"bad request: {message}"})
            try:
                head = self.conn.send(
                    h11.Response(status_code=status, headers=[*answer.headers, (b"connection", b"close"), SERVER_HEADER])
                )
                tail = self.conn.send(h11.Data(data=answer.body[0]))
                end = self.conn.send(h11.EndOfMessage())
                if self.transport is not None:
                    self.transport.write((head or b"") + (tail or b"") + (end or b""))
            except h11.LocalProtocolError:
                pass
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
