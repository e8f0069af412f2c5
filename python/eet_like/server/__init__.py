"""`eet-like serve`: an OpenAI-compatible HTTP server with continuous batching.

    engine.py    the thread that owns the model: queue, admission, batched decode steps
    protocol.py  request validation and response objects (the OpenAI subset)
    app.py       the HTTP routes (Starlette), server-sent events, client disconnects
    metrics.py   Prometheus metrics
    main.py      the command: load the model, run uvicorn, drain on SIGTERM

Needs the `serve` extra (pip install 'eet_like[serve]'); importing this package does not.
"""


def add_arguments(p, model_opts):
    """The `serve` subcommand's options (called by eet_like.cli.build_parser)."""
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

    def run(args):
        from .main import run as _run
        return _run(args)

    p.set_defaults(func=run)
