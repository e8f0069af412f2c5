"""Prints the versions the test run resolved and compares them with constraints.txt.

    python scripts/check_pins.py            # pinned run: exit 1 if an installed package differs
    python scripts/check_pins.py --latest   # unpinned run (make test-latest): report drift only

The constraints pin every package the test and benchmark setup installs (see constraints.txt);
a drift means the venv was not made by scripts/setup_env.sh from this checkout.
"""
import argparse
import os
import re
import sys
from importlib import metadata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = ("torch", "transformers", "tokenizers", "safetensors", "numpy", "sentence-transformers",
       "fairseq-fixed", "ctranslate2", "pytest")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: str) -> dict:
    pins = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;]+)", line)
            if m is None:
                raise SystemExit(f"check_pins: {path}: not an exact pin: {line!r}")
            pins[norm(m.group(1))] = m.group(2)
    return pins


def installed() -> dict:
    return {norm(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}


def same(want: str, have: str) -> bool:
    # torch==2.13.0 is satisfied by the local build 2.13.0+cpu, as pip treats it.
    return have == want or ("+" not in want and have.split("+", 1)[0] == want)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latest", action="store_true", help="unpinned run: report, never fail")
    ap.add_argument("--constraints", default=os.path.join(ROOT, "constraints.txt"))
    args = ap.parse_args()
    pins, have = read_pins(args.constraints), installed()
    shown = " ".join(f"{k}=={have[k]}" for k in KEY if k in have)
    print(f"[versions] python {sys.version.split()[0]} {shown}")
    drift = sorted(f"{k} {have[k]} (pinned {v})" for k, v in pins.items() if k in have and not same(v, have[k]))
    unpinned = sorted(k for k in have if k not in pins and k not in ("eet-like", "pip", "setuptools", "wheel"))
    if args.latest:
        print(f"[versions] newer than the pins: {', '.join(drift) if drift else 'none'}")
        return 0
    if drift or unpinned:
        if drift:
            print(f"[versions] ERROR: installed versions differ from constraints.txt: {', '.join(drift)}")
        if unpinned:
            print(f"[versions] ERROR: installed but not pinned in constraints.txt: {', '.join(unpinned)}")
        return 1
    print(f"[versions] all {sum(k in have for k in pins)} installed packages match constraints.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
