"""The HTTP side of `eet-like serve` (Starlette, run by uvicorn): routes, request bodies,
server-sent events, and watching for clients that leave. It never touches the model: requests
go to the engine's queue and come back as events (see engine.py).

    POST /v1/completions   GPT-2 models        POST /v1/embeddings   BERT models
    GET  /v1/models        GET /health         GET /metrics (Prometheus text)
"""
import asyncio
import collections
import json
import logging
import threading
import weakref
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import protocol
from .engine import EmbedJob, QueueFull, Sequence, Unavailable
from .protocol import RequestError

log = logging.getLogger("eet_like.server")

MAX_BODY = 8 << 20   # bytes of one request body
RETRY_AFTER = "1"     # seconds, on 503


def _error(status: int, message: str, type: str = "invalid_request_error", param=None, code=None,
           headers=None) -> JSONResponse:
    return JSONResponse(protocol.error_body(message, type, param, code), status_code=status, headers=headers)


async def _read_json(request: Request):
    size, chunks = 0, []
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise RequestError(f"the request body is larger than {MAX_BODY} bytes", status=413)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise RequestError("the request body is empty; send a JSON object")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RequestError(f"the request body is not valid JSON: {e}") from None


async def _until_disconnect(receive):
    """Returns when the client has gone (the body was read, so only http.disconnect can come)."""
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return


class _Handoff:
    """Events from the engine thread into one event loop, in batches: a decode step emits one
    event per running row, and waking the loop once per event (a write to its self-pipe, a
    context switch) costs CPU the step's threads need. put() queues the event and wakes the loop
    only when no hand-over is pending; the loop then delivers everything queued so far."""

    def __init__(self, loop):
        self.loop = loop
        self.pending = collections.deque()
        self.lock = threading.Lock()
        self.scheduled = False

    def put(self, queue: asyncio.Queue, ev):
        self.pending.append((queue, ev))
        with self.lock:
            if self.scheduled:
                return
            self.scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the event loop is closed: nobody is listening any more
            pass

    def _deliver(self):
        with self.lock:  # from here on, a new put() schedules another delivery
            self.scheduled = False
        while self.pending:
            queue, ev = self.pending.popleft()
            queue.put_nowait(ev)


_handoffs = weakref.WeakKeyDictionary()  # event loop -> its _Handoff


class _Channel:
    """Engine -> request events, across threads: the engine thread calls put(), the request's
    task awaits get()."""

    def __init__(self):
        loop = asyncio.get_running_loop()
        self.handoff = _handoffs.get(loop)
        if self.handoff is None:
            self.handoff = _handoffs[loop] = _Handoff(loop)
        self.queue: asyncio.Queue = asyncio.Queue()

    def put(self, ev):
        self.handoff.put(self.queue, ev)

    async def get(self):
        return await self.queue.get()


class EventStreamResponse(Response):
    """Server-sent events from an async iterator of bytes, while watching the connection: if the
    client leaves first, the stream stops and on_disconnect() runs (the engine frees the rows)."""

    def __init__(self, chunks, on_disconnect):  # no Response.__init__: it would add content-length: 0
        self.status_code, self.background = 200, None
        self.raw_headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                            (b"x-accel-buffering", b"no")]
        self.chunks, self.on_disconnect = chunks, on_disconnect

    async def __call__(self, scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})

        async def pump():
            async for chunk in self.chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        pump_t = asyncio.ensure_future(pump())
        watch_t = asyncio.ensure_future(_until_disconnect(receive))
        try:
            await asyncio.wait({pump_t, watch_t}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            left = not pump_t.done() or pump_t.cancelled() or pump_t.exception() is not None
            if pump_t.done() and not pump_t.cancelled() and pump_t.exception() is not None:
                log.warning("stream ended early: %r", pump_t.exception())
            for t in (pump_t, watch_t):
                t.cancel()
            await asyncio.gather(pump_t, watch_t, return_exceptions=True)
            await self.chunks.aclose()
            if left:
                self.on_disconnect()


def _sse(obj) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def build_app(engine, metrics, spec: protocol.ModelSpec) -> Starlette:
    """engine: a GenerationEngine (spec.kind "completions") or an EmbeddingEngine ("embeddings")."""

    def count(endpoint, outcome):
        metrics.requests.labels(endpoint, outcome).inc()

    def reject(endpoint, e: Exception) -> JSONResponse:
        count(endpoint, "rejected")
        if isinstance(e, QueueFull):
            return _error(503, str(e), "server_overloaded", code="queue_full", headers={"Retry-After": RETRY_AFTER})
        return _error(503, str(e), "server_unavailable", code="shutting_down", headers={"Retry-After": RETRY_AFTER})

    def wrong_kind(endpoint) -> JSONResponse:
        count(endpoint, "invalid")
        return _error(400, f"the model '{spec.id}' serves {spec.kind}, not {endpoint}: use /v1/{spec.kind}",
                      param="model")

    async def parse(ep, request, parser):
        """(the parsed request, None), or (None, the error response) for a request this model
        does not serve or that does not parse."""
        if spec.kind != ep:
            return None, wrong_kind(ep)
        try:
            return parser(await _read_json(request)), None
        except RequestError as e:
            count(ep, "invalid")
            return None, JSONResponse(e.body(), status_code=e.status)

    def parse_embedding(body):
        """-> (the request, the token count of each text)."""
        req = protocol.parse_embedding(body, spec)
        lengths = [len(spec.encode(t.strip())) for t in req.texts]
        protocol.check_embedding_lengths(lengths, spec.context)
        return req, lengths

    async def completions(request: Request):
        ep = "completions"
        req, error = await parse(ep, request, lambda body: protocol.parse_completion(body, spec))
        if error is not None:
            return error
        ch = _Channel()
        seqs = [Sequence(ids, req.params, ch.put, index=i) for i, ids in enumerate(req.prompts)]
        try:
            engine.submit(seqs)
        except (QueueFull, Unavailable) as e:
            return reject(ep, e)
        rid = protocol.completion_id()
        outcome = _Outcome(ep)
        if req.params.stream:
            return EventStreamResponse(_stream(outcome, req, seqs, ch, rid), lambda: _left(outcome, seqs))
        return await _collect(outcome, request, req, seqs, ch, rid)

    class _Outcome:
        """A request's outcome is counted once, by whichever end decides it first."""

        def __init__(self, endpoint):
            self.endpoint, self.decided = endpoint, False

        def __call__(self, outcome):
            if not self.decided:
                self.decided = True
                count(self.endpoint, outcome)

    def _left(outcome, seqs):
        engine.cancel(seqs)
        outcome("cancelled")

    async def _stream(outcome, req, seqs, ch: _Channel, rid):
        """SSE chunks of one completion request (one choice per prompt), then [DONE]."""
        running, prompt_tokens, completion_tokens = len(seqs), 0, 0
        with_ids = req.return_token_ids
        while running:
            ev = await ch.get()
            if ev.kind == "failed":
                outcome("error")
                engine.cancel(seqs)
                yield _sse(protocol.error_body(ev.message, "server_error"))
                yield b"data: [DONE]\n\n"
                return
            if ev.kind == "delta":
                if ev.text or with_ids:
                    yield _sse(protocol.completion_object(rid, spec.id, [protocol.choice(
                        ev.index, ev.text, None, ev.token_ids if with_ids else None)], None))
                continue
            running -= 1
            prompt_tokens += ev.prompt_tokens
            completion_tokens += ev.completion_tokens
            yield _sse(protocol.completion_object(rid, spec.id, [protocol.choice(
                ev.index, ev.text, ev.finish_reason, [] if with_ids else None)], None))
        outcome("completed")
        if req.include_usage:
            yield _sse(protocol.completion_object(rid, spec.id, [],
                                                  protocol.usage(prompt_tokens, completion_tokens)))
        yield b"data: [DONE]\n\n"

    async def _collect(outcome, request, req, seqs, ch: _Channel, rid):
        async def results():
            done = {}
            while len(done) < len(seqs):
                ev = await ch.get()
                if ev.kind == "failed":
                    return ev
                if ev.kind == "finished":
                    done[ev.index] = ev
            return [done[i] for i in range(len(seqs))]

        res_t = asyncio.ensure_future(results())
        watch_t = asyncio.ensure_future(_until_disconnect(request.receive))
        await asyncio.wait({res_t, watch_t}, return_when=asyncio.FIRST_COMPLETED)
        watch_t.cancel()
        if not res_t.done():  # the client left before the answer
            res_t.cancel()
            _left(outcome, seqs)
            return Response(status_code=499)
        out = res_t.result()
        if not isinstance(out, list):
            engine.cancel(seqs)
            outcome("error")
            return _error(500, out.message, "server_error")
        outcome("completed")
        choices = [protocol.choice(e.index, e.text, e.finish_reason, e.token_ids if req.return_token_ids else None)
                   for e in out]
        return JSONResponse(protocol.completion_object(
            rid, spec.id, choices, protocol.usage(sum(e.prompt_tokens for e in out),
                                                  sum(e.completion_tokens for e in out))))

    async def embeddings(request: Request):
        ep = "embeddings"
        parsed, error = await parse(ep, request, parse_embedding)
        if error is not None:
            return error
        req, lengths = parsed
        ch = _Channel()
        job = EmbedJob(req.texts, ch.put)
        try:
            engine.submit(job)
        except (QueueFull, Unavailable) as e:
            return reject(ep, e)
        res_t = asyncio.ensure_future(ch.get())
        watch_t = asyncio.ensure_future(_until_disconnect(request.receive))
        await asyncio.wait({res_t, watch_t}, return_when=asyncio.FIRST_COMPLETED)
        watch_t.cancel()
        if not res_t.done():
            res_t.cancel()
            engine.cancel(job)
            count(ep, "cancelled")
            return Response(status_code=499)
        out = res_t.result()
        if isinstance(out, Exception):
            count(ep, "error")
            return _error(500, str(out), "server_error")
        count(ep, "completed")
        metrics.prompt_tokens.inc(sum(lengths))
        return JSONResponse(protocol.embedding_object(spec.id, out, req.base64, sum(lengths)))

    async def models(request: Request):
        return JSONResponse({"object": "list", "data": [
            {"id": spec.id, "object": "model", "created": 0, "owned_by": "eet_like", "kind": spec.kind}]})

    async def health(request: Request):
        if engine.draining:
            return JSONResponse({"status": "draining"}, status_code=503, headers={"Retry-After": RETRY_AFTER})
        return JSONResponse({"status": "ok", "model": spec.id})

    async def metrics_route(request: Request):
        return Response(metrics.render(), media_type=metrics.content_type)

    async def http_error(request: Request, exc: HTTPException):
        msg = {404: f"no route {request.method} {request.url.path}",
               405: f"method {request.method} is not allowed on {request.url.path}"}.get(exc.status_code, exc.detail)
        return _error(exc.status_code, msg, headers=getattr(exc, "headers", None))

    async def server_error(request: Request, exc: Exception):
        log.exception("unhandled error", exc_info=exc)
        return _error(500, f"internal server error: {type(exc).__name__}", "server_error")

    def lifespan(app):
        class _Life:
            async def __aenter__(self):
                engine.start()

            async def __aexit__(self, *exc):
                await asyncio.get_running_loop().run_in_executor(None, engine.stop)
        return _Life()

    routes = [Route("/v1/completions", completions, methods=["POST"]),
              Route("/v1/embeddings", embeddings, methods=["POST"]),
              Route("/v1/models", models, methods=["GET"]),
              Route("/health", health, methods=["GET"]),
              Route("/metrics", metrics_route, methods=["GET"])]
    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={HTTPException: http_error, Exception: server_error})

