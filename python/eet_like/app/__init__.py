"""The applications built on the eet_like library: the `eet-like` command (cli.py) and what
its subcommands run: demo.py, bench.py (also the measuring code of benchmarks/*.py),
serve.py (the front of the HTTP server eet_like.server) and ray_cli.py (`--ray`, on
eet_like.ray). They import the library; the library never imports them."""
