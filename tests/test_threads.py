"""The adaptive thread count (eet_like/_threads.py): the load estimator on fake /proc/stat and
own-CPU-time inputs, the hysteresis, the opt-outs, that the caller's count comes back, that a
decode in another Python thread runs with the lowered count, and that results do not depend on
the thread count (greedy tokens, BERT outputs)."""
import threading

import pytest
import torch

import eet_like
from eet_like import _threads


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def fake_estimator(cpus=(0, 1), stat=None, own=None, clock=None):
    """An estimator over mutable fakes: stat {cpu: [busy, total]}, own [seconds]."""
    stat = {c: [0, 0] for c in cpus} if stat is None else stat
    own = [0.0] if own is None else own
    clock = Clock() if clock is None else clock
    est = _threads.LoadEstimator(cpus=cpus, read_stat=lambda: {c: tuple(v) for c, v in stat.items()},
                                 own_time=lambda: own[0], clock=clock, hz=100)
    return est, stat, own, clock


class FixedLoad:
    """A stand-in estimator whose smoothed load is whatever the test puts in `loads`."""
    def __init__(self, loads, cpus=(0, 1)):
        self.loads, self.cpus, self.clock, self.calls = list(loads), list(cpus), Clock(), 0

    def sample(self):
        self.calls += 1
        return self.loads.pop(0) if len(self.loads) > 1 else self.loads[0]


@pytest.fixture
def two_threads(monkeypatch):
    """Two torch threads in this thread, the feature on, the process policy restored after."""
    before = torch.get_num_threads()
    monkeypatch.delenv("EET_LIKE_ADAPTIVE_THREADS", raising=False)
    _threads.set_adaptive_threads(None)
    torch.set_num_threads(2)
    yield
    _threads.set_policy(None)
    _threads.set_adaptive_threads(None)
    torch.set_num_threads(before)


def busy_policy(conceded=1):
    """A policy that leaves `conceded` of 2 cores to others and never samples again."""
    p = _threads.ThreadPolicy(FixedLoad([conceded + 0.5]), interval=1e9)
    p.update()
    assert p.conceded == conceded
    return p


# ------------------------------------------------------------------ the estimator

def test_read_proc_stat_parses_busy_and_total(tmp_path):
    f = tmp_path / "stat"
    f.write_text("cpu  10 1 2 100 5 0 0 0 0 0\n"
                 "cpu0 4 1 2 50 3 1 2 7 9 0\n"   # steal 7 counted, guest 9 (inside user) not
                 "cpu1 6 0 0 50 2 0 0 0 0 0\n"
                 "intr 123 0 0\nctxt 99\n")
    assert _threads.read_proc_stat(str(f)) == {0: (4 + 1 + 2 + 1 + 2 + 7, 17 + 50 + 3), 1: (6, 58)}


def test_read_proc_stat_reads_this_machine():
    stat = _threads.read_proc_stat()
    assert set(_threads.LoadEstimator().cpus) <= set(stat)
    assert all(0 <= busy <= total for busy, total in stat.values())


def test_estimator_subtracts_own_time():
    est, stat, own, clock = fake_estimator()
    assert est.sample() is None                       # one sample: no window yet
    clock.t, own[0] = 1.0, 0.5
    stat[0][0], stat[1][0] = 100, 50                  # 1.5 cores busy, 0.5 of them ours
    assert est.sample() == pytest.approx(1.0)


def test_estimator_ignores_cpus_outside_the_mask_and_clamps():
    est, stat, own, clock = fake_estimator(cpus=(1,), stat={0: [0, 0], 1: [0, 0]})
    est.sample()
    clock.t = 1.0
    stat[0][0] = 100                                  # another process on cpu 0: not ours to share
    assert est.sample() == 0.0
    clock.t, own[0] = 2.0, 0.0
    stat[1][0] += 300                                 # more than the mask has (tick noise)
    assert est.sample() <= 1.0


def test_estimator_smooths_short_windows_and_forgets_long_ones():
    est, stat, own, clock = fake_estimator()
    est.sample()
    clock.t = 1.0
    est.sample()                                      # a quiet second: load 0
    clock.t += 0.1
    stat[1][0] += 10                                  # 100 ms of a full core
    short = est.sample()
    assert 0.1 < short < 0.5                          # a 100 ms window moves the estimate partly
    clock.t += 10.0
    stat[1][0] += 1000
    assert est.sample() == pytest.approx(1.0, abs=1e-6)   # 10 s windows replace it


def test_estimator_without_proc_stat_stays_unknown():
    def fail():
        raise OSError("no /proc")
    est = _threads.LoadEstimator(cpus=(0, 1), read_stat=fail)
    assert est.sample() is None and est.sample() is None
    p = _threads.ThreadPolicy(est, interval=0)
    assert p.update() == 0 and p.threads(2) == 2


# ------------------------------------------------------------------ the policy

def test_policy_hysteresis():
    loads = [0.3, 0.5, 0.3, 0.25, 0.1, 0.3, 0.36, 0.9, 0.0]
    want = [0, 1, 1, 1, 0, 0, 1, 1, 0]
    fake = FixedLoad(loads)
    p = _threads.ThreadPolicy(fake, interval=0.1)
    got = []
    for _ in loads:
        got.append(p.update())
        fake.clock.t += 0.1
    assert got == want
    assert p.threads(2) == 2 and p.threads(1) == 1


def test_policy_never_concedes_the_last_core_and_caps_at_user_threads():
    p = _threads.ThreadPolicy(FixedLoad([7.0], cpus=range(4)), interval=0)
    assert p.update() == 3
    assert p.threads(8) == 1 and p.threads(4) == 1
    p = _threads.ThreadPolicy(FixedLoad([1.0], cpus=range(4)), interval=0)
    p.update()
    assert p.threads(8) == 3 and p.threads(2) == 2   # 3 free cores: a 2-thread user keeps 2


def test_policy_samples_at_most_every_interval():
    fake = FixedLoad([0.0])
    p = _threads.ThreadPolicy(fake, interval=0.1)
    for _ in range(5):
        p.update()
    assert fake.calls == 1
    fake.clock.t = 0.1
    p.update()
    assert fake.calls == 2


# ------------------------------------------------------------------ scopes, opt-outs

def test_scope_lowers_and_restores(two_threads):
    _threads.set_policy(busy_policy())
    with _threads.adaptive("cpu"):
        assert torch.get_num_threads() == 1
        with _threads.adaptive("cpu"):                # nested: the outer scope's count
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_scope_restores_after_an_error(two_threads):
    _threads.set_policy(busy_policy())
    with pytest.raises(KeyError):
        with _threads.adaptive("cpu"):
            raise KeyError("x")
    assert torch.get_num_threads() == 2


def test_scope_keeps_an_explicit_single_thread_and_other_devices(two_threads):
    _threads.set_policy(busy_policy())
    torch.set_num_threads(1)
    with _threads.adaptive("cpu"):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 1
    torch.set_num_threads(2)
    with _threads.adaptive("cuda"):
        assert torch.get_num_threads() == 2


@pytest.mark.parametrize("how", ["env", "function", "function-over-env"])
def test_opt_out(two_threads, monkeypatch, how):
    _threads.set_policy(busy_policy())
    if how == "env":
        monkeypatch.setenv("EET_LIKE_ADAPTIVE_THREADS", "0")
    elif how == "function":
        eet_like.set_adaptive_threads(False)
    else:
        monkeypatch.setenv("EET_LIKE_ADAPTIVE_THREADS", "1")
        eet_like.set_adaptive_threads(False)
    assert not eet_like.adaptive_threads_enabled()
    with _threads.adaptive("cpu"):
        assert torch.get_num_threads() == 2
    eet_like.set_adaptive_threads(None)
    if how == "env":
        assert not eet_like.adaptive_threads_enabled()
        eet_like.set_adaptive_threads(True)                # the function wins over the env
        assert eet_like.adaptive_threads_enabled()
    else:
        assert eet_like.adaptive_threads_enabled()


def test_opt_out_bad_values(two_threads, monkeypatch):
    monkeypatch.setenv("EET_LIKE_ADAPTIVE_THREADS", "off")
    with pytest.raises(ValueError, match="EET_LIKE_ADAPTIVE_THREADS must be 0 or 1, got 'off'"):
        eet_like.adaptive_threads_enabled()
    with pytest.raises(TypeError, match="enabled must be True, False or None"):
        eet_like.set_adaptive_threads("no")


def test_tick_outside_a_scope_does_nothing(two_threads):
    _threads.set_policy(busy_policy())
    _threads.tick()
    assert torch.get_num_threads() == 2


# ------------------------------------------------------------------ in the models

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def gpt2():
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=2, n_embd=256, n_head=4, vocab_size=1003, n_positions=128, initializer_range=0.3,
        bos_token_id=None, eos_token_id=None)).eval()
    return eet_like.GPT2LMHeadModel.from_pretrained(hf, max_batch=4, max_seq_len=128)


class ThreadsSeen:
    """A streamer recording torch.get_num_threads() (omp_get_max_threads of the thread that runs
    the kernels) at every token."""
    def __init__(self):
        self.seen = []

    def put(self, tokens):
        self.seen.append(torch.get_num_threads())

    def end(self):
        pass


def test_decode_in_another_thread_runs_with_the_lowered_count(two_threads, gpt2):
    _threads.set_policy(busy_policy())
    streamer, after = ThreadsSeen(), []
    ids = torch.randint(1, 1003, (1, 9), generator=torch.Generator().manual_seed(3))

    def work():
        torch.set_num_threads(2)                      # the engine thread's own setting
        gpt2.generate(ids, max_new_tokens=6, do_sample=False, streamer=streamer)
        after.append(torch.get_num_threads())

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert streamer.seen == [1] * 7                   # the prompt, then each new token
    assert after == [2]
    assert torch.get_num_threads() == 2


def test_decode_follows_the_load_between_steps(two_threads, gpt2):
    loads = [0.0, 0.0, 0.9, 0.9, 0.9, 0.0, 0.0]
    fake = FixedLoad(loads)
    p = _threads.ThreadPolicy(fake, interval=0)       # sample at every tick
    _threads.set_policy(p)
    streamer = ThreadsSeen()
    ids = torch.randint(1, 1003, (1, 5), generator=torch.Generator().manual_seed(4))
    gpt2.generate(ids, max_new_tokens=7, do_sample=False, streamer=streamer)
    # put(prompt) comes before the first tick, each token's put before the next tick.
    assert streamer.seen == [2, 2, 2, 1, 1, 1, 2, 2]
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("batch", [1, 3])
def test_greedy_tokens_do_not_depend_on_the_thread_count(two_threads, gpt2, batch):
    eet_like.set_adaptive_threads(False)
    ids = torch.randint(1, 1003, (batch, 11), generator=torch.Generator().manual_seed(5))
    out = {}
    for n in (1, 2):
        torch.set_num_threads(n)
        out[n] = gpt2.generate(ids, max_new_tokens=24, do_sample=False, return_dict_in_generate=True,
                               output_logits=True)
    assert torch.equal(out[1].sequences, out[2].sequences)
    for a, b in zip(out[1].logits, out[2].logits):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_bert_same_outputs_with_1_and_2_threads_and_restores(two_threads):
    torch.manual_seed(0)
    hf = transformers.BertModel(transformers.BertConfig(
        vocab_size=500, hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256)).eval()
    m = eet_like.BertModel.from_pretrained(hf)
    ids = torch.randint(1, 500, (4, 33), generator=torch.Generator().manual_seed(6))
    eet_like.set_adaptive_threads(False)
    out = {}
    for n in (1, 2):
        torch.set_num_threads(n)
        out[n] = m(ids).last_hidden_state
    torch.testing.assert_close(out[1], out[2], atol=1e-5, rtol=1e-5)
    eet_like.set_adaptive_threads(None)
    torch.set_num_threads(2)
    _threads.set_policy(busy_policy())
    torch.testing.assert_close(m(ids).last_hidden_state, out[2], atol=1e-5, rtol=1e-5)
    assert torch.get_num_threads() == 2


class IdsText:
    """A tokenizer stand-in for the engine: a completion's text is its ids."""
    def decode(self, ids, **kw):
        return " ".join(map(str, ids))


def test_server_engine_steps_run_with_the_lowered_count(two_threads, gpt2):
    """`eet-like serve`'s engine thread (prefill_row / decode_rows, not generate()) follows the
    load too; its greedy tokens equal generate()'s."""
    from eet_like.server.engine import GenerationEngine, SamplingParams, Sequence
    from eet_like.server.metrics import Metrics
    _threads.set_policy(busy_policy())
    seen = []
    model = gpt2
    orig = model.decode_rows

    def decode_rows(tokens, positions):
        seen.append(torch.get_num_threads())
        return orig(tokens, positions)

    ids = torch.randint(1, 1003, (9,), generator=torch.Generator().manual_seed(4)).tolist()
    events, done = [], threading.Event()

    def emit(ev):
        events.append(ev)
        if ev.kind in ("finished", "failed"):
            done.set()

    model.decode_rows = decode_rows
    try:
        eng = GenerationEngine(model, IdsText(), 4, Metrics())
        eng.start()
        eng.submit([Sequence(ids, SamplingParams(max_tokens=5, temperature=0), emit)])
        assert done.wait(60)
        eng.stop()
    finally:
        del model.decode_rows
    assert events[-1].kind == "finished" and seen == [1] * 4
    want = gpt2.generate(torch.tensor([ids]), max_new_tokens=5, do_sample=False)[0, 9:].tolist()
    assert events[-1].token_ids == want
    assert torch.get_num_threads() == 2
