"""Token selection from processed scores [N, V] (float32)."""
from typing import Optional

import torch


def greedy(scores):
    return torch.argmax(scores, dim=-1)


def sample(scores, generator: Optional[torch.Generator] = None):
    """One draw per row from softmax(scores); filtered tokens (-inf) have probability 0.
    Same calls as transformers, so a seeded global RNG draws the same tokens."""
    probs = torch.softmax(scores, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)


def make_generator(generator, seed, device) -> Optional[torch.Generator]:
    """generator= (a torch.Generator on the model's device) or seed= (an int) -> Generator;
    neither: None (the global RNG, as transformers)."""
    if generator is not None and seed is not None:
        raise ValueError("pass either generator or seed, not both")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if torch.device(generator.device).type != torch.device(device).type:
            raise ValueError(f"generator must be on the model's device ({device}), got {generator.device}")
        return generator
    if seed is not None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        g = torch.Generator(device=device)
        g.manual_seed(seed)
        return g
    return None
