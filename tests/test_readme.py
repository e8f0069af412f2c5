"""The README is true: its code blocks run as written, the commands and files it names exist,
and the two commands it promises are Makefile targets."""
import os
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README has no python code block"
    for code in blocks:
        exec(compile(code, str(README), "exec"), {})


def test_readme_two_commands_are_make_targets():
    text = README.read_text()
    assert "make demo" in text and "make test" in text
    targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M)
    assert "demo" in targets and "test" in targets


def test_readme_cli_commands_exist():
    from eet_like.app.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    named = set(re.findall(r"eet-like (\w+)", README.read_text()))
    assert {"demo", "generate", "embed", "predict", "bench"} <= named
    assert named <= set(sub.choices), named - set(sub.choices)
    for name, parser in sub.choices.items():  # every --option the README gives a command is real
        opts = {o for a in parser._actions for o in a.option_strings}
        for line in re.findall(rf"eet-like {name}\b(.*)", README.read_text()):
            for opt in re.findall(r"(--[a-z][\w-]*)", line):
                assert opt in opts, f"README: eet-like {name} {opt}"


def test_readme_paths_exist():
    text = README.read_text()
    paths = set(re.findall(r"\b((?:example|benchmarks|docker|scripts|tests|\.ci)/[\w./-]+\.(?:py|md|txt|sh)"
                           r"|docker/Dockerfile|requirements[\w-]*\.txt)", text))
    assert "docker/Dockerfile" in paths and "benchmarks/RESULTS.md" in paths
    missing = sorted(p for p in paths if not os.path.exists(ROOT / p))
    assert not missing, missing
