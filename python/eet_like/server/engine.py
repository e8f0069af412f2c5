"""The engines of `eet-like serve`: one thread owns the model and its KV cache rows; HTTP
handlers only submit work and receive events.

GenerationEngine (GPT-2), continuous batching. Every iteration of its loop
  1. frees the rows of cancelled sequences (the client went away);
  2. admits waiting sequences into free rows: each one's prompt pass fills its own cache row
     (model.prefill_row) and its first token is chosen;
  3. runs ONE decode step over every running row, each at its own position
     (model.decode_rows), chooses one token per row with that row's sampling parameters, and
     frees the rows that finished.
Rows stay dense, [0, n): a freed row is refilled by moving the last running row into it
(model.move_cache_row), so a step covers exactly the running rows. A row's logits do not depend
on the other rows (see gpt2.decode_rows), and a sampled row draws from its own torch.Generator,
so a request gets the tokens generate() gives for its prompt alone, whatever else runs.
policy="static" admits waiting sequences only when no row is running (a batch is formed and
runs to its end), the way a dynamic-batching service batches: the batch starts when max_batch
sequences wait or STATIC_WINDOW seconds after the first one arrived. The baseline of
benchmarks/bench_serve.py.

EmbeddingEngine (BERT): the requests waiting when the thread comes round are encoded together
(up to max_batch inputs) by eet_like.encode_sentences.
"""
import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence as Seq, Tuple

import torch

from .. import _threads
from ..embeddings import encode_sentences
from ..generation import logits_process, sampling

log = logging.getLogger("eet_like.server")

POLICIES = ("continuous", "static")
STATIC_WINDOW = 0.1  # seconds a static batch waits to fill (service-streamer's default max_latency)


class QueueFull(Exception):
    """The bounded queue has no room: the HTTP layer answers 503 with Retry-After."""


class Unavailable(Exception):
    """The engine is draining (SIGTERM) or stopped: 503."""


@dataclass
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0      # 0: greedy
    top_p: float = 1.0            # 1: off
    top_k: int = 0                # 0: off
    seed: Optional[int] = None    # None: a fresh random seed
    stop: Tuple[str, ...] = ()
    stream: bool = False          # report each token as it comes


@dataclass
class Event:
    """What a sequence reports to its request. kind "delta": one new token (stream only);
    "finished": the end (finish_reason "stop"/"length"; text = the whole completion, or for a
    stream the text not yet sent); "failed": message."""
    kind: str
    index: int
    text: str = ""
    token_ids: List[int] = field(default_factory=list)
    finish_reason: Optional[str] = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    message: str = ""


class Sequence:
    """One prompt of a request, from the queue to its last token. The engine thread owns every
    field but `cancelled`, which any thread may set (through GenerationEngine.cancel)."""

    def __init__(self, prompt_ids: Seq[int], params: SamplingParams, emit: Callable[[Event], None], index=0):
        self.prompt_ids = list(prompt_ids)
        self.params = params
        self.emit = emit
        self.index = index
        self.generated: List[int] = []   # every token chosen, a final eos included
        self.output_ids: List[int] = []  # the completion's tokens (no final eos)
        self.text = ""                   # their text, cut before a stop string
        self.sent = 0                    # characters of the text already streamed
        self.row = -1                    # cache row while running
        self.pos = 0                     # next cache slot to write
        self.generator: Optional[torch.Generator] = None
        self.cancelled = False
        self.done = False
        self.t_submit = time.monotonic()
        self.t_first: Optional[float] = None


@dataclass
class EmbedJob:
    texts: List[str]
    emit: Callable[[object], None]   # gets a float32 [len(texts), hidden] tensor, or an Exception
    cancelled: bool = False


class _Worker:
    """A thread that owns the model, a bounded waiting queue and the drain/stop flags."""

    def __init__(self, max_queue: int, metrics, name: str):
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise ValueError(f"max_queue must be an int >= 1, got {max_queue!r}")
        self.max_queue = max_queue
        self.metrics = metrics
        self._waiting = collections.deque()
        self._queued = 0               # units waiting (sequences, or embedding inputs)
        self._cv = threading.Condition()
        self._stop = False
        self.draining = False
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def start(self):
        self._thread.start()

    def drain(self):
        """Stop taking new work (SIGTERM); what was accepted still runs."""
        with self._cv:
            self.draining = True

    def stop(self, timeout: float = 10.0):
        """End the loop; work still running or waiting fails with 'the server is shutting down'."""
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _put(self, items, units: int):
        with self._cv:
            if self.draining or self._stop:
                raise Unavailable("the server is shutting down and takes no new requests")
            if self._queued + units > self.max_queue:
                raise QueueFull(f"the queue is full ({self._queued} of {self.max_queue} waiting); retry later")
            self._waiting.extend(items)
            self._queued += units
            self.metrics.queue_depth.set(self._queued)
            self._cv.notify_all()

    def _main(self):
        with torch.inference_mode():
            self.loop()


class GenerationEngine(_Worker):
    def __init__(self, model, tokenizer, max_queue: int, metrics, policy: str = "continuous",
                 max_batch: Optional[int] = None):
        super().__init__(max_queue, metrics, "eet-like-generate")
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        self.model, self.tokenizer, self.policy = model, tokenizer, policy
        self.max_batch = model.max_batch if max_batch is None else min(max_batch, model.max_batch)
        eos = model.generation_defaults.get("eos_token_id")
        self.eos = set(eos if isinstance(eos, (list, tuple)) else ([] if eos is None else [eos]))
        self._rows: List[Sequence] = []   # running sequences; _rows[i] owns cache row i

    # -- called from the HTTP side ------------------------------------------------------------

    def submit(self, seqs: List[Sequence]):
        """Queue the prompts of one request (all or none). Raises QueueFull / Unavailable."""
        for s in seqs:
            if s.params.temperature > 0:
                s.generator = torch.Generator(device=self.model.device)
                if s.params.seed is None:
                    s.generator.seed()
                else:
                    s.generator.manual_seed(s.params.seed)
        self._put(seqs, len(seqs))

    def cancel(self, seqs: List[Sequence]):
        """The client left: the rows are freed at the engine's next iteration."""
        for s in seqs:
            s.cancelled = True
        with self._cv:
            self._cv.notify_all()

    # -- the engine thread ----------------------------------------------------------------------

    def loop(self):
        # On CPU the engine's thread count follows the machine's load, as generate()'s does
        # (eet_like._threads): tick() at every iteration.
        with _threads.adaptive(self.model.device):
            self._loop()

    def _loop(self):
        while True:
            with self._cv:
                while not self._stop and not self._rows and not self._waiting:
                    self._cv.wait()
                if self._stop:
                    break
                admit, wait = self._take()
                if wait:  # a static batch still filling
                    self._cv.wait(wait)
                    continue
            try:
                self._iteration(admit)
            except Exception as e:  # a bug or an out-of-memory: fail what runs, keep serving
                log.exception("engine step failed")
                for s in admit + self._rows:
                    if not s.done:
                        self._fail(s, f"internal error in the engine: {type(e).__name__}: {e}")
                self._rows = []
            self.metrics.running_rows.set(len(self._rows))
        with self._cv:
            left = list(self._rows) + list(self._waiting)
            self._waiting.clear()
            self._queued = 0
        for s in left:
            if not s.done:
                self._fail(s, "the server is shutting down")
        self._rows = []
        self.metrics.running_rows.set(0)
        self.metrics.queue_depth.set(0)

    def _take(self) -> Tuple[List[Sequence], float]:
        """(under the lock) The waiting sequences to admit now, by policy, and how long to wait
        before asking again when none may start yet (a static batch filling)."""
        if any(s.cancelled for s in self._waiting):  # clients gone while waiting: their places free up
            for s in self._waiting:
                s.done = s.done or s.cancelled
            self._waiting = collections.deque(s for s in self._waiting if not s.cancelled)
            self._queued = len(self._waiting)
        free = self.max_batch - len(self._rows)
        if self.policy == "static":
            if self._rows:
                free = 0
            elif self._waiting and len(self._waiting) < self.max_batch:
                left = self._waiting[0].t_submit + STATIC_WINDOW - time.monotonic()
                if left > 0:
                    return [], left
        admit = []
        while free > 0 and self._waiting:
            admit.append(self._waiting.popleft())
            self._queued -= 1
            free -= 1
        self.metrics.queue_depth.set(self._queued)
        return admit, 0.0

    def _iteration(self, admit: List[Sequence]):
        _threads.tick()
        for s in list(self._rows):
            if s.cancelled:
                self._free(s)
        for s in admit:
            self._admit(s)
        if not self._rows:
            return
        rows = list(self._rows)
        t0 = time.perf_counter()
        tokens = torch.tensor([s.generated[-1] for s in rows], dtype=torch.int64)
        positions = torch.tensor([s.pos for s in rows], dtype=torch.int32)
        logits = self.model.decode_rows(tokens, positions)
        chosen = self._choose(logits, rows)
        for s in rows:  # before any row moves: a move copies slots [0, pos)
            s.pos += 1
        for s, t in zip(rows, chosen):
            self._accept(s, t)
        self.metrics.step_seconds.observe(time.perf_counter() - t0)
        self.metrics.step_rows.observe(len(rows))

    def _admit(self, s: Sequence):
        if s.cancelled:
            s.done = True
            return
        row = len(self._rows)
        ids = torch.tensor([s.prompt_ids], dtype=torch.int64)
        logits = self.model.prefill_row(row, ids)
        s.row, s.pos = row, len(s.prompt_ids)
        self._rows.append(s)
        self.metrics.prompt_tokens.inc(len(s.prompt_ids))
        self._accept(s, self._choose(logits, [s])[0])

    def _choose(self, logits, seqs: List[Sequence]) -> List[int]:
        """One token per row, with the operations generate() runs for that row alone: greedy is
        an argmax; sampling goes through the same score processors in transformers' order
        (temperature, top-k, top-p) and one multinomial draw from the row's own generator."""
        greedy = [i for i, s in enumerate(seqs) if s.params.temperature == 0]
        out: List[int] = [0] * len(seqs)
        if greedy:
            sub = logits if len(greedy) == len(seqs) else logits[greedy]
            for i, t in zip(greedy, torch.argmax(sub, dim=-1).tolist()):
                out[i] = t
        for i, s in enumerate(seqs):
            p = s.params
            if p.temperature == 0:
                continue
            scores = logits[i:i + 1].to(dtype=torch.float32, copy=True)
            if p.temperature != 1.0:
                scores = scores / p.temperature
            if p.top_k > 0:
                scores = logits_process.top_k_filter(scores, p.top_k)
            if p.top_p < 1.0:
                scores = logits_process.top_p_filter(scores, p.top_p)
            out[i] = int(sampling.sample(scores, s.generator)[0])
        return out

    def _accept(self, s: Sequence, token: int):
        now = time.monotonic()
        if s.t_first is None:
            s.t_first = now
            self.metrics.ttft.observe(now - s.t_submit)
        s.generated.append(token)
        self.metrics.generated_tokens.inc()
        if token in self.eos:
            return self._finish(s, "stop")
        s.output_ids.append(token)
        p = s.params
        if p.stream or p.stop:
            delta, stopped = self._text_update(s, final=False)
            if p.stream:
                s.emit(Event("delta", s.index, delta, [token]))
            if stopped:
                return self._finish(s, "stop", stopped=True)
        if len(s.generated) >= p.max_tokens:
            return self._finish(s, "length")

    def _decode(self, ids):
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _text_update(self, s: Sequence, final: bool):
        """The completion's text from its tokens; returns (text not yet streamed that may go out
        now, whether a stop string appeared). The text is cut before the first stop string;
        text that could still grow into a stop string, or ends in an incomplete UTF-8
        character, is held back until it is decided."""
        full = self._decode(s.output_ids)
        stops = s.params.stop
        if stops:
            hits = [i for i in (full.find(x, s.sent) for x in stops) if i >= 0]
            if hits:
                cut = min(hits)
                delta, s.sent = full[s.sent:cut], cut
                s.text = full[:cut]
                return delta, True
        s.text = full
        safe = len(full)
        if not final:
            while safe > s.sent and full[safe - 1] == "\ufffd":
                safe -= 1
            hold = 0
            for x in stops:
                for k in range(min(len(x) - 1, safe - s.sent), hold, -1):
                    if full.endswith(x[:k], 0, safe):
                        hold = k
                        break
            safe -= hold
        delta, s.sent = full[s.sent:safe], safe
        return delta, False

    def _finish(self, s: Sequence, reason: str, stopped: bool = False):
        p = s.params
        if p.stream:
            tail = "" if stopped else self._text_update(s, final=True)[0]
        else:
            if not stopped:
                s.text = self._text_update(s, final=True)[0] if p.stop else self._decode(s.output_ids)
            tail = s.text
        s.emit(Event("finished", s.index, tail, [] if p.stream else list(s.output_ids), reason,
                     len(s.prompt_ids), len(s.generated)))
        self._free(s)

    def _fail(self, s: Sequence, message: str):
        s.done = True
        s.emit(Event("failed", s.index, message=message))

    def _free(self, s: Sequence):
        """Release s's row; the last running row moves into it so the rows stay [0, n)."""
        s.done = True
        if s.row < 0:
            return
        i, last = s.row, self._rows.pop()
        if last is not s:
            self.model.move_cache_row(last.row, i, last.pos)
            self._rows[i] = last
            last.row = i
        s.row = -1


class EmbeddingEngine(_Worker):
    def __init__(self, model, tokenizer, max_batch: int, max_queue: int, metrics, max_length: int):
        super().__init__(max_queue, metrics, "eet-like-embed")
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be an int >= 1, got {max_batch!r}")
        self.model, self.tokenizer = model, tokenizer
        self.max_batch, self.max_length = max_batch, max_length

    def submit(self, job: EmbedJob):
        self._put([job], len(job.texts))

    def cancel(self, job: EmbedJob):
        job.cancelled = True

    def loop(self):
        while True:
            with self._cv:
                while not self._stop and not self._waiting:
                    self._cv.wait()
                if self._stop:
                    break
                jobs, n = [], 0
                while self._waiting and (not jobs or n + len(self._waiting[0].texts) <= self.max_batch):
                    job = self._waiting.popleft()
                    self._queued -= len(job.texts)
                    if not job.cancelled:
                        jobs.append(job)
                        n += len(job.texts)
                self.metrics.queue_depth.set(self._queued)
            if not jobs:
                continue
            t0 = time.perf_counter()
            self.metrics.running_rows.set(n)
            try:
                emb = encode_sentences(self.model, self.tokenizer, [t for j in jobs for t in j.texts],
                                       batch_size=self.max_batch, max_length=self.max_length)
            except Exception as e:
                log.exception("embedding batch failed")
                for j in jobs:
                    j.emit(RuntimeError(f"internal error in the engine: {type(e).__name__}: {e}"))
            else:
                start = 0
                for j in jobs:
                    j.emit(emb[start:start + len(j.texts)])
                    start += len(j.texts)
            self.metrics.running_rows.set(0)
            self.metrics.step_seconds.observe(time.perf_counter() - t0)
            self.metrics.step_rows.observe(n)
        with self._cv:
            left = list(self._waiting)
            self._waiting.clear()
            self._queued = 0
        for j in left:
            j.emit(RuntimeError("the server is shutting down"))
