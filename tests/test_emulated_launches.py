"""The launch configurations the CUDA glue picks, read from the emulator's launch log
(eet_like._C.emu_take_launches, emulation build only): the decode attention kernel is sized by
the live context (max_keys), not by the cache length, from the op up to GPT-2's generate()."""
import pytest
import torch

import eet_like
from eet_like import _C, ops

pytestmark = [pytest.mark.emulated,
              pytest.mark.skipif(not eet_like.cuda_emulated(), reason="needs the CUDA emulation build "
                                 "(EET_CUDA_EMULATION=1, make test-cuda-emu)")]


@pytest.fixture
def launches():
    """Logs the launches of the test; the fixture's value returns (and clears) them."""
    _C.emu_launch_log(True)
    _C.emu_take_launches()
    yield _C.emu_take_launches
    _C.emu_launch_log(False)


def decode_threads(log):
    return [block[0] * block[1] * block[2] for kernel, grid, block, smem in log if "attn_decode_kernel" in kernel]


def test_decode_launch_sized_by_live_keys(launches):
    """One row, 2 heads (far fewer blocks than SMs), a 2048-slot cache: a long context gets 16
    warps per block, a short one 4; max_keys (or its absence: the cache length) decides."""
    H, D, Smax = 2, 64, 2048
    g = torch.Generator().manual_seed(0)
    kc, vc = torch.randn(1, H, Smax, D, generator=g), torch.randn(1, H, Smax, D, generator=g)
    qkv = torch.randn(1, 3 * H * D, generator=g)
    pos = torch.tensor([40], dtype=torch.int32)
    threads = {}
    for bound in (None, 41, 600, 2048):
        ops.masked_attention(qkv, kc, vc, pos, H, max_keys=bound)
        threads[bound] = decode_threads(launches())
    assert threads == {None: [512], 41: [128], 600: [256], 2048: [512]}


def test_generate_sizes_decode_by_length(launches):
    """GPT-2's decode steps pass the power-of-two bound of their length: a 6-token prompt
    decoding 5 tokens in a 1024-slot cache launches small attention blocks only."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=1, n_positions=1024, n_embd=64, n_head=2, vocab_size=97,
                                  bos_token_id=None, eos_token_id=None)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    m = eet_like.GPT2LMHeadModel.from_pretrained(hf, max_batch=2, max_seq_len=1024)
    launches()
    m.generate(torch.tensor([[5, 6, 7, 8, 9, 10]]), max_new_tokens=5, pad_token_id=0)
    threads = decode_threads(launches())
    assert threads and set(threads) == {128}, threads
