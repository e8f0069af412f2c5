"""Prometheus metrics of one server (its own registry, served at GET /metrics)."""
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Outcomes of a request (label `outcome` of eet_like_requests_total).
OUTCOMES = ("completed", "cancelled", "invalid", "rejected", "error")

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("eet_like_requests", "HTTP requests by endpoint and outcome "
                                "(completed, cancelled: the client left, invalid: 4xx, rejected: 503, error: 500)",
                                ["endpoint", "outcome"], registry=r)
        self.queue_depth = Gauge("eet_like_queue_depth", "sequences (embeddings: inputs) waiting for the engine",
                                 registry=r)
        self.running_rows = Gauge("eet_like_running_rows", "rows in the running batch (KV-cache rows in use)",
                                  registry=r)
        self.prompt_tokens = Counter("eet_like_prompt_tokens", "prompt tokens prefilled", registry=r)
        self.generated_tokens = Counter("eet_like_generated_tokens", "tokens generated (a final eos included)",
                                        registry=r)
        self.ttft = Histogram("eet_like_time_to_first_token_seconds",
                              "from a sequence's arrival to its first generated token", buckets=_LATENCY, registry=r)
        self.step_seconds = Histogram("eet_like_step_seconds",
                                      "one batched decode step (model + token choice), or one embedding batch",
                                      buckets=_LATENCY, registry=r)
        self.step_rows = Histogram("eet_like_step_rows", "rows in a decode step (embeddings: inputs in a batch)",
                                   buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r)
        for endpoint in ("completions", "embeddings"):
            for outcome in OUTCOMES:
                self.requests.labels(endpoint, outcome)  # every series present from the start

    def render(self) -> bytes:
        return generate_latest(self.registry)
