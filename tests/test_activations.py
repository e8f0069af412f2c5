"""One activation name table for C++ and Python (csrc/include/eet/activations.h): every name
in ops.ACTIVATIONS is accepted by the C++ ops and by the Python wrappers, and the same names
are rejected by both with a message naming the activation. Also the packed-GEMM panel width,
exported from the same place."""
import pytest
import torch

from eet_like import _C, ops, reference

REJECTED = ["linear", "none", "bogus"]


def test_activations_come_from_the_extension():
    assert ops.ACTIVATIONS == tuple(_C.activations())
    assert "identity" in ops.ACTIVATIONS and "gelu" in ops.ACTIVATIONS
    assert len(set(ops.ACTIVATIONS)) == len(ops.ACTIVATIONS)


@pytest.mark.parametrize("name", ops.ACTIVATIONS)
def test_every_name_accepted_by_cpp_and_python(name):
    g = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(3, 8, generator=g), torch.randn(5, 8, generator=g),
               torch.randn(5, generator=g))
    want = reference.linear(x, w, b, name)
    torch.testing.assert_close(torch.ops.eet_like.linear(x, w, b, name), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ops.linear(x, w, b, name), want, atol=1e-5, rtol=1e-5)
    packed = ops.pack_linear(w)
    torch.testing.assert_close(torch.ops.eet_like.linear_packed(x, packed, 5, b, name), want,
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", REJECTED)
def test_same_names_rejected_by_cpp_and_python(name):
    x, w, b = torch.randn(3, 8), torch.randn(5, 8), torch.randn(5)
    msg = f"activation must be one of .*; got '{name}'"
    with pytest.raises(ValueError, match=msg):
        torch.ops.eet_like.linear(x, w, b, name)
    with pytest.raises(ValueError, match=msg):
        ops.linear(x, w, b, name)
    with pytest.raises(ValueError, match=msg):
        torch.ops.eet_like.ffn(x, torch.randn(16, 8), None, torch.randn(8, 16), None, name, None)
    with pytest.raises(ValueError, match=msg):
        torch.ops.eet_like.linear_packed(x, ops.pack_linear(w), 5, b, name)


def test_messages_list_the_same_names():
    x, w = torch.randn(3, 8), torch.randn(5, 8)
    listed = ", ".join(ops.ACTIVATIONS)
    for call in (lambda: torch.ops.eet_like.linear(x, w, None, "bogus"), lambda: ops.linear(x, w, None, "bogus")):
        with pytest.raises(ValueError) as e:
            call()
        assert listed in str(e.value)


def test_panel_width_is_the_packed_layout():
    assert ops.PANEL_WIDTH == _C.PANEL_WIDTH
    n, k = 2 * ops.PANEL_WIDTH + 3, 7
    packed = ops.pack_linear(torch.randn(n, k))
    assert packed.shape == (-(-n // ops.PANEL_WIDTH), k, ops.PANEL_WIDTH)
