"""The ``shadowcanary`` console script: the CLI, or a clear word when the evaluator is not installed.

The base install (``pip install shadowcanary[router]``) is the router SDK and the inference logger;
the CLI comes with the ``evaluator`` extra. Without it the command says so instead of a traceback.
"""

from __future__ import annotations

import sys

#: The project's own packages: a module missing from one of them is a bug, not an install to complete.
OWN_PACKAGES = frozenset({"schemas", "evaluators", "streams"})


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; exit status 1 with one line on stderr when its libraries are missing."""
    try:
        from streams.cli.main import main as cli_main
    except ModuleNotFoundError as exc:
        if not exc.name or exc.name.split(".")[0] in OWN_PACKAGES:
            raise
        print(f"error: the shadowcanary command needs the evaluator's libraries ({exc.name} is not installed): "
              "pip install 'shadowcanary[evaluator]'", file=sys.stderr)
        return 1
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
