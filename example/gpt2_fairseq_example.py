"""GPT-2-small-shaped fairseq transformer_lm decoded by fairseq's own SequenceGenerator, first
with fairseq's decoder, then with eet_like's (the whole change is one line:
`model.decoder = eet_like.fairseq.TransformerDecoder.from_fairseq(model.decoder)`).

The weights are RANDOM (no download, runs offline): the generated text is meaningless; the
point is the speed and that both decoders choose the same tokens.

    python example/gpt2_fairseq_example.py [--layers 12] [--batch 4] [--beam 1] [--new-tokens 32]
                                           [--prompt-len 16] [--quick] [--threads N]

Needs fairseq (pip install --no-build-isolation --no-deps fairseq-fixed==0.12.3.1 plus
requirements-fairseq.txt; see scripts/install_fairseq.sh).
"""
import argparse
import copy
import logging
import sys
import time
from types import SimpleNamespace

import torch

logging.disable(logging.WARNING)   # fairseq logs its optional-dependency notes at import

try:
    from fairseq.data import Dictionary
    from fairseq.models.transformer_lm import TransformerLanguageModel, base_lm_architecture
    from fairseq.sequence_generator import SequenceGenerator
except ImportError as e:
    sys.exit(f"this example needs fairseq ({e}): run `make setup-fairseq` (scripts/install_fairseq.sh)")

import eet_like.fairseq  # noqa: E402


def build_model(layers, embed, heads, vocab, seed=0):
    d = Dictionary()
    for i in range(vocab - len(d)):
        d.add_symbol(f"tok{i}")
    args = argparse.Namespace(decoder_layers=layers, decoder_embed_dim=embed, decoder_ffn_embed_dim=4 * embed,
                              decoder_attention_heads=heads, decoder_learned_pos=True, activation_fn="gelu",
                              share_decoder_input_output_embed=False, max_target_positions=1024, dropout=0.0)
    base_lm_architecture(args)   # GPT-2 layout: pre-norm, final layer norm
    torch.manual_seed(seed)
    model = TransformerLanguageModel.build_model(args, SimpleNamespace(source_dictionary=d, target_dictionary=d))
    with torch.no_grad():
        # Sharper logits keep the greedy/beam choices decisive, so float rounding differences
        # cannot flip a near-tie. (A separate output projection: with random tied embeddings the
        # model just repeats its input token.)
        model.decoder.layer_norm.weight.mul_(4.0)
    return model.eval(), d


def generate(model, d, prompts, beam, new_tokens):
    gen = SequenceGenerator([model], d, beam_size=beam, max_len_b=prompts.size(1) + new_tokens,
                            min_len=prompts.size(1) + new_tokens)
    sample = {"net_input": {"src_tokens": prompts, "src_lengths": torch.full((prompts.size(0),), prompts.size(1))}}
    with torch.no_grad():
        t0 = time.perf_counter()
        hypos = gen.generate([model], sample, prefix_tokens=prompts)
        dt = time.perf_counter() - t0
    return [h[0]["tokens"] for h in hypos], dt


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--embed", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--vocab", type=int, default=50264, help="dictionary size (GPT-2: 50257 + specials)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--beam", type=int, default=1)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--quick", action="store_true", help="small shape: 4 layers, 256 wide, 8k vocab")
    a = ap.parse_args(argv)
    if a.quick:
        a.layers, a.embed, a.heads, a.vocab = 4, 256, 4, 8192
        a.new_tokens = min(a.new_tokens, 16)
    if a.threads:
        torch.set_num_threads(a.threads)

    model, d = build_model(a.layers, a.embed, a.heads, a.vocab)
    g = torch.Generator().manual_seed(1)
    prompts = torch.randint(d.nspecial, len(d), (a.batch, a.prompt_len), generator=g)
    print(f"fairseq transformer_lm, random weights: {a.layers} layers, {a.embed} wide, {a.heads} heads, "
          f"{len(d)} symbols; batch {a.batch}, beam {a.beam}, prompt {a.prompt_len}, {a.new_tokens} new tokens, "
          f"{torch.get_num_threads()} threads")

    fast = copy.deepcopy(model)
    fast.decoder = eet_like.fairseq.TransformerDecoder.from_fairseq(fast.decoder)   # the one-line change

    generate(fast, d, prompts[:, :4], 1, 2)   # warm-up (allocator, oneDNN primitives)
    generate(model, d, prompts[:, :4], 1, 2)
    ref, t_ref = generate(model, d, prompts, a.beam, a.new_tokens)
    out, t_out = generate(fast, d, prompts, a.beam, a.new_tokens)

    n = a.batch * a.new_tokens
    print(f"fairseq decoder : {t_ref:7.2f} s  {n / t_ref:8.1f} new tokens/s")
    print(f"eet_like decoder: {t_out:7.2f} s  {n / t_out:8.1f} new tokens/s  ({t_ref / t_out:.2f}x)")
    same = all(torch.equal(r, o) for r, o in zip(ref, out))
    print(f"tokens equal: {same}")
    print("sample (meaningless, random weights):", d.string(out[0][a.prompt_len:a.prompt_len + 12]))
    if not same:
        bad = [i for i, (r, o) in enumerate(zip(ref, out)) if not torch.equal(r, o)]
        print(f"rows that differ: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
