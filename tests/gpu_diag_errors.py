"""Which error paths of the CUDA build crash instead of raising (a diagnosis run on the GPU
machine; each case in its own process). python tests/gpu_diag_errors.py"""
import subprocess
import sys

CASES = {
    "cpu_layernorm_shape": "ops.layernorm(torch.randn(2, 8), torch.ones(7), torch.zeros(7))",
    "cuda_layernorm_shape": "ops.layernorm(torch.randn(2, 8, device='cuda'), torch.ones(7, device='cuda'), torch.zeros(7, device='cuda'))",
    "cpu_embedding_bad_id": "ops.embedding(torch.tensor([[60]]), torch.randn(50, 8), torch.randn(4, 8))",
    "cuda_embedding_bad_id": "ops.embedding(torch.tensor([[60]], device='cuda'), torch.randn(50, 8, device='cuda'), torch.randn(4, 8, device='cuda'))",
    "cuda_embedding_ok": "print(ops.embedding(torch.tensor([[6]], device='cuda'), torch.randn(50, 8, device='cuda'), torch.randn(4, 8, device='cuda')).sum().item())",
    "cuda_masked_attention_overflow_op": "torch.ops.eet_like.masked_attention(torch.randn(1, 48, device='cuda'), torch.randn(1, 2, 4, 8, device='cuda'), torch.randn(1, 2, 4, 8, device='cuda'), torch.tensor([9], dtype=torch.int32, device='cuda'), None, 2, None)",
}
PRE = "import torch, eet_like; from eet_like import ops\ntry:\n    {}\nexcept Exception as e:\n    print('raised', type(e).__name__, str(e)[:100])\n"
for name, code in CASES.items():
    r = subprocess.run([sys.executable, "-X", "faulthandler", "-c", PRE.format(code)], capture_output=True, text=True)
    print(f"{name:40s} rc={r.returncode} {(r.stdout.strip() or r.stderr.strip().splitlines()[0] if (r.stdout.strip() or r.stderr.strip()) else '')[:150]}")
