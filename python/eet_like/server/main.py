"""`eet-like serve --model DIR ...`: load the checkpoint (GPT-2: completions, BERT: embeddings),
start the engine thread and serve HTTP with uvicorn until SIGTERM/SIGINT. Then: stop listening,
answer new requests on open connections with 503, let the accepted ones finish (up to
--drain-timeout seconds), stop the engine and exit 0."""
import os
import signal
import sys

from ..cli import CliError, _check_device, _model_dir, _quantize, _tokenizer, _torch_dtype


def _need_serve_extra():
    missing = []
    for mod in ("starlette", "uvicorn", "prometheus_client"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise CliError(f"eet-like serve needs {', '.join(missing)}: pip install 'eet_like[serve]'")


def _check_args(args):
    if not 0 <= args.port <= 65535:
        raise CliError(f"--port must be in [0, 65535], got {args.port}")
    for name in ("max_batch", "max_queue"):
        if getattr(args, name) < 1:
            raise CliError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.max_seq_len is not None and args.max_seq_len < 1:
        raise CliError(f"--max-seq-len must be >= 1, got {args.max_seq_len}")
    if not args.drain_timeout > 0:
        raise CliError(f"--drain-timeout must be > 0 seconds, got {args.drain_timeout}")


def _load(args, metrics):
    """-> (engine, ModelSpec)"""
    from .engine import EmbeddingEngine, GenerationEngine
    from .protocol import ModelSpec

    model_type = _model_dir(args.model)
    dtype = _torch_dtype(args.dtype)
    _check_device(args.device, dtype)
    name = os.path.basename(os.path.normpath(args.model))
    import eet_like
    if model_type == "gpt2":
        tok = _tokenizer(args.tokenizer or args.model)
        model = eet_like.GPT2LMHeadModel.from_pretrained(args.model, dtype=dtype, device=args.device,
                                                         max_batch=args.max_batch, max_seq_len=args.max_seq_len,
                                                         quantize=_quantize(args))
        engine = GenerationEngine(model, tok, args.max_queue, metrics, policy=args.batching)
        spec = ModelSpec(name, "completions", lambda t: tok(t)["input_ids"], model.config.vocab_size,
                         model.max_seq_len, args.max_queue)
    elif model_type == "bert":
        if args.batching != "continuous":
            raise CliError("--batching applies to GPT-2 models (BERT requests are always batched as they come)")
        tok = _tokenizer(args.tokenizer or args.model)
        model = eet_like.BertModel.from_pretrained(args.model, dtype=dtype, device=args.device,
                                                   quantize=_quantize(args))
        limit = model.config.max_position_embeddings
        default = getattr(model, "sentence_max_seq_length", None) or limit
        tml = getattr(tok, "model_max_length", None)
        if isinstance(tml, int):
            default = min(default, tml)
        context = default if args.max_seq_len is None else args.max_seq_len
        if context > limit:
            raise CliError(f"--max-seq-len {context} is more than the model's max_position_embeddings ({limit})")
        engine = EmbeddingEngine(model, tok, args.max_batch, args.max_queue, metrics, max_length=context)
        spec = ModelSpec(name, "embeddings", lambda t: tok(t)["input_ids"], model.config.vocab_size, context,
                         args.max_queue)
    else:
        raise CliError(f"--model: model_type {model_type!r} is not supported by serve (supported: gpt2, bert)")
    return engine, spec


def run(args) -> int:
    _need_serve_extra()
    _check_args(args)
    import uvicorn

    from .app import build_app
    from .metrics import Metrics

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
        raise CliError(f"--host/--port: could not serve on {args.host}:{args.port} (see the message above)")
    return 0
