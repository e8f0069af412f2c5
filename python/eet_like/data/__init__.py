"""Small data shipped with eet_like (package_data "data/*")."""
import json
import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def load_corpus() -> dict:
    """The built-in semantic-search corpus: {"sentences": [str, ...], "queries": [{"query": str,
    "expected": str (one of sentences, the best match with all-MiniLM-L6-v2)}, ...]}."""
    with open(os.path.join(_HERE, "corpus.json")) as f:
        return json.load(f)
