"""eet_like.fairseq: the fairseq integration (optional; needs fairseq, e.g. fairseq-fixed 0.12.3.1).

    import eet_like.fairseq
    model.decoder = eet_like.fairseq.TransformerDecoder.from_fairseq(model.decoder)
    # or: model = eet_like.fairseq.optimize(model)
    # or: model, cfg, task = eet_like.fairseq.load_checkpoint("model.pt", trust_checkpoint=True)

fairseq's own SequenceGenerator then decodes with the eet_like kernels. Importing this module
imports fairseq; `import eet_like` alone never does.
"""
from .integrations.fairseq import ACTIVATIONS, TransformerDecoder, optimize
from .integrations.fairseq_checkpoint import FairseqCheckpoint, load_checkpoint

__all__ = ["TransformerDecoder", "optimize", "load_checkpoint", "FairseqCheckpoint", "ACTIVATIONS"]
