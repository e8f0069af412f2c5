"""An OpenAI-compatible HTTP server with continuous batching (the library behind `eet-like serve`).

    engine.py    the thread that owns the model: queue, admission, batched decode steps
    protocol.py  request validation and response objects (the OpenAI subset)
    http.py      the HTTP routes (Starlette), server-sent events, client disconnects
    metrics.py   Prometheus metrics

The command (load the model, run uvicorn, drain on SIGTERM) is eet_like.app.serve.
http.py and metrics.py need the `serve` extra (pip install 'eet_like[serve]'); importing this
package does not.
"""
