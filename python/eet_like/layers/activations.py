"""Activation names of the libraries whose checkpoints eet_like reads, mapped to the eet_like
activations (ops.ACTIVATIONS) computing the same formula: the one table of foreign names."""
from .. import ops

FOREIGN_ACTIVATIONS = {
    # transformers' ACT2FN names ("gelu" is the erf form there too)
    "transformers": {"gelu": "gelu", "gelu_new": "gelu_new", "gelu_fast": "gelu_fast",
                     "gelu_pytorch_tanh": "gelu_pytorch_tanh", "relu": "relu"},
    # fairseq --activation-fn: "gelu" is erf, "gelu_accurate" (and its deprecated alias
    # "gelu_fast") the tanh form
    "fairseq": {"relu": "relu", "gelu": "gelu", "gelu_accurate": "gelu_new", "gelu_fast": "gelu_new",
                "linear": "identity"},
}
assert all(v in ops.ACTIVATIONS for table in FOREIGN_ACTIVATIONS.values() for v in table.values())


def activation(name, source: str, option: str = "activation") -> str:
    """The eet_like activation of `source`'s activation `name`; ValueError naming `option` if
    there is none."""
    table = FOREIGN_ACTIVATIONS[source]
    if not isinstance(name, str) or name not in table:
        raise ValueError(f"{option} {name!r} is not supported; supported: {', '.join(table)}")
    return table[name]
