"""`eet-like serve --model DIR ...`: load the checkpoint (GPT-2: completions, BERT: embeddings),
start the engine thread and serve HTTP with uvicorn until SIGTERM/SIGINT. Then: stop listening,
answer new requests on open connections with 503, let the accepted ones finish (up to
--drain-timeout seconds), stop the engine and exit 0.

The server itself is the library package eet_like.server (engine, protocol, http, metrics);
this module is its command-line front."""
import os
import signal
import sys

from .. import BertModel, GPT2LMHeadModel
from ..errors import UsageError
from ..server.engine import EmbeddingEngine, GenerationEngine
from ..server.protocol import ModelSpec
from ..text import load_tokenizer
from .common import check_device, model_type_of, quantize_arg, torch_dtype


def add_arguments(p, model_opts):
    """The `serve` subcommand's options (called by eet_like.app.cli.build_parser)."""
    model_opts(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-batch", type=int, default=16,
                   help="rows decoded together (KV-cache rows; BERT: inputs per batch); 1 = one request at a time")
    p.add_argument("--max-seq-len", type=int, default=None,
                   help="longest prompt + completion in tokens (KV-cache length; default the model's context)")
    p.add_argument("--max-queue", type=int, default=256,
                   help="prompts (BERT: inputs) waiting for a row; beyond it requests get 503 + Retry-After")
    p.add_argument("--batching", default="continuous", choices=["continuous", "static"],
                   help="continuous: requests join the running batch at every step; static: a new batch "
                        "starts when the previous one has finished, after waiting up to 0.1 s to fill "
                        "(for comparison)")
    p.add_argument("--drain-timeout", type=float, default=30.0,
                   help="on SIGTERM/SIGINT, seconds to let accepted requests finish (default 30)")
    p.add_argument("--tokenizer", default=None, help="tokenizer directory (default: --model)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=run)


def _need_serve_extra():
    missing = []
    for mod in ("starlette", "uvicorn", "prometheus_client"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise UsageError(f"eet-like serve needs {', '.join(missing)}: pip install 'eet_like[serve]'")


def _check_args(args):
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be in [0, 65535], got {args.port}")
    for name in ("max_batch", "max_queue"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.max_seq_len is not None and args.max_seq_len < 1:
        raise UsageError(f"--max-seq-len must be >= 1, got {args.max_seq_len}")
    if not args.drain_timeout > 0:
        raise UsageError(f"--drain-timeout must be > 0 seconds, got {args.drain_timeout}")


def _load(args, metrics):
    """-> (engine, ModelSpec)"""
    model_type = model_type_of(args.model)
    dtype = torch_dtype(args.dtype)
    check_device(args.device, dtype)
    name = os.path.basename(os.path.normpath(args.model))
    if model_type == "gpt2":
        tok = load_tokenizer(args.tokenizer or args.model)
        model = GPT2LMHeadModel.from_pretrained(args.model, dtype=dtype, device=args.device,
                                                max_batch=args.max_batch, max_seq_len=args.max_seq_len,
                                                quantize=quantize_arg(args))
        engine = GenerationEngine(model, tok, args.max_queue, metrics, policy=args.batching)
        spec = ModelSpec(name, "completions", lambda t: tok(t)["input_ids"], model.config.vocab_size,
                         model.max_seq_len, args.max_queue)
    elif model_type == "bert":
        if args.batching != "continuous":
            raise UsageError("--batching applies to GPT-2 models (BERT requests are always batched as they come)")
        tok = load_tokenizer(args.tokenizer or args.model)
        model = BertModel.from_pretrained(args.model, dtype=dtype, device=args.device, quantize=quantize_arg(args))
        limit = model.config.max_position_embeddings
        default = getattr(model, "sentence_max_seq_length", None) or limit
        tml = getattr(tok, "model_max_length", None)
        if isinstance(tml, int):
            default = min(default, tml)
        context = default if args.max_seq_len is None else args.max_seq_len
        if context > limit:
            raise UsageError(f"--max-seq-len {context} is more than the model's max_position_embeddings ({limit})")
        engine = EmbeddingEngine(model, tok, args.max_batch, args.max_queue, metrics, max_length=context)
        spec = ModelSpec(name, "embeddings", lambda t: tok(t)["input_ids"], model.config.vocab_size, context,
                         args.max_queue)
    else:
        raise UsageError(f"--model: model_type {model_type!r} is not supported by serve (supported: gpt2, bert)")
    return engine, spec


def run(args) -> int:
    _need_serve_extra()
    _check_args(args)
    # uvicorn, Starlette and prometheus_client are the optional `serve` extra: imported once
    # _need_serve_extra has said which are missing.
    import uvicorn

    from ..server.http import build_app
    from ..server.metrics import Metrics

    metrics = Metrics()
    engine, spec = _load(args, metrics)
    app = build_app(engine, metrics, spec)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            engine.drain()  # before uvicorn stops listening: open connections get 503 from here on
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False,
                            lifespan="on", timeout_graceful_shutdown=args.drain_timeout)
    server = Server(config)
    # uvicorn re-raises the signal that stopped it once it has shut down; with Python's default
    # SIGTERM action that would kill the process (status 143) after a clean drain.
    drained = []
    previous = signal.signal(signal.SIGTERM, lambda sig, frame: drained.append(sig))
    print(f"eet-like serve: {spec.id} ({spec.kind}) on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    except SystemExit:  # uvicorn exits when it cannot listen (its log says why)
        if server.started:
            raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not server.started:
        raise UsageError(f"--host/--port: could not serve on {args.host}:{args.port} (see the message above)")
    return 0
