"""The ``darwin`` command: one ``main(argv)`` that parses and dispatches.

Rules: argv and the environment are read here and nowhere else; every command returns an exit
code; errors a user can cause become one readable line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

logger = logging.getLogger(__name__)
err_console = Console(stderr=True)


def _make_tiny(args: argparse.Namespace) -> int:
    from darwin.model import make_tiny

    out = make_tiny(args.family, Path(args.out), layers=args.layers, hidden=args.hidden,
                    seed=args.seed)
    Console().print(f"wrote a {args.family} model ({args.layers} layers, hidden {args.hidden}) "
                    f"to {out}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from darwin.client.demo import DemoConfig, run_demo

    config = DemoConfig(model=Path(args.model) if args.model else None, prompt=args.prompt,
                        max_new_tokens=args.max_new_tokens)
    if args.home:
        config = dataclasses.replace(config, home=Path(args.home))
    return run_demo(config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="darwin", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True)

    model = commands.add_parser("model", help="work with local checkpoints")
    model_commands = model.add_subparsers(dest="model_command", required=True)
    tiny = model_commands.add_parser("make-tiny", help="write a small deterministic checkpoint")
    tiny.add_argument("out", help="directory to write")
    tiny.add_argument("--family", required=True, choices=["llama", "mistral", "qwen2", "gpt2",
                                                          "bert"])
    tiny.add_argument("--layers", type=int, default=4)
    tiny.add_argument("--hidden", type=int, default=64)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(run=_make_tiny)

    demo = commands.add_parser("demo", help="run the local demo")
    demo.add_argument("--model", help="a local checkpoint dir (default: a generated tiny model)")
    demo.add_argument("--prompt", default="The network of many small machines")
    demo.add_argument("--max-new-tokens", type=int, default=16)
    demo.add_argument("--home", help="where the demo keeps its model (~/.cache/darwin/demo)")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as exc:  # the edge: one readable line, details only with -v
        logger.debug("command failed", exc_info=True)
        err_console.print(f"[red]error:[/red] {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
