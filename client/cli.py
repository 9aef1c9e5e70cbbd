"""The ``darwin`` command: one ``main(argv)`` that parses and dispatches.

Rules: argv and the environment are read here and nowhere else; every command returns an exit
code; errors a user can cause become one readable line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.markup import escape

logger = logging.getLogger(__name__)
err_console = Console(stderr=True)
DEFAULT_HOME = os.environ.get("DARWIN_HOME", "~/.darwin")  # the client's identity and ledger


def _make_tiny(args: argparse.Namespace) -> int:
    from darwin.model import make_tiny

    out = make_tiny(args.family, Path(args.out), layers=args.layers, hidden=args.hidden,
                    seed=args.seed)
    Console().print(f"wrote a {args.family} model ({args.layers} layers, hidden {args.hidden}) "
                    f"to {out}")
    return 0


def _submit(args: argparse.Namespace) -> int:
    import trio

    from darwin import heap
    from darwin.client.sampling import SamplingConfig
    from darwin.client.submit import Submission, SubmitConfig
    from darwin.client.submit_view import run_in_console
    from darwin.client.verification import VerificationConfig

    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                              top_p=args.top_p, seed=args.seed)
    verification = VerificationConfig(rate=args.verify_rate,
                                      timeout=args.verify_timeout)
    config = SubmitConfig(model=Path(args.model), prompt=args.prompt,
                          bootstrap=tuple(args.bootstrap), sampling=sampling,
                          home=Path(args.home).expanduser(), verification=verification)
    submission = Submission(config)
    heap.settle()  # a long generation should not stall in a full collection of the imports
    if args.json:
        result = trio.run(submission.run)
        sys.stdout.write(json.dumps(result.to_json()) + "\n")
        return 0
    run_in_console(submission, Console(highlight=False))
    return 0


def _verify_proof(args: argparse.Namespace) -> int:
    from darwin.verifier import verify_proof_command

    return verify_proof_command(Path(args.file), Path(args.model), json_output=args.json)


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a rate is between 0 and 1, got {text}")
    return value


def _demo(args: argparse.Namespace) -> int:
    from darwin.client.demo import DemoConfig, run_demo

    config = DemoConfig(model=Path(args.model) if args.model else None, prompt=args.prompt,
                        max_new_tokens=args.max_new_tokens, cheater=args.cheater)
    if args.home:
        config = dataclasses.replace(config, home=Path(args.home))
    return run_demo(config)


def _ledger_verify(args: argparse.Namespace) -> int:
    from darwin.client.ledger_commands import verify_command

    return verify_command(Path(args.home).expanduser(), json=args.json)


def _ledger_export(args: argparse.Namespace) -> int:
    from darwin.client.ledger_commands import export_command

    return export_command(Path(args.home).expanduser(), Path(args.out) if args.out else None)


def _reputation(args: argparse.Namespace) -> int:
    from darwin.client.ledger_commands import reputation_command

    return reputation_command(Path(args.home).expanduser(), json=args.json)


def _explore(args: argparse.Namespace) -> int:
    from darwin.explorer.command import explore_command

    return explore_command(Path(args.home).expanduser(), once=args.once, json=args.json,
                           model=Path(args.model) if args.model else None)


def _add_ledger_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ledger = commands.add_parser("ledger", help="check or export a node's or client's ledger")
    ledger_commands = ledger.add_subparsers(dest="ledger_command", required=True)
    verify = ledger_commands.add_parser("verify", help="recompute the hash chain and signatures")
    verify.add_argument("--home", default=DEFAULT_HOME, help="the ledger's home (~/.darwin)")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(run=_ledger_verify)
    export = ledger_commands.add_parser("export", help="write every entry as a JSON line")
    export.add_argument("--home", default=DEFAULT_HOME, help="the ledger's home (~/.darwin)")
    export.add_argument("--out", help="file to write (default: standard output)")
    export.set_defaults(run=_ledger_export)

    reputation = commands.add_parser("reputation", help="peers' reputation from a ledger")
    reputation.add_argument("--home", default=DEFAULT_HOME, help="the ledger's home (~/.darwin)")
    reputation.add_argument("--json", action="store_true")
    reputation.set_defaults(run=_reputation)

    explore = commands.add_parser("explore", help="browse a ledger's peers, proofs and chain "
                                                  "(a terminal UI; read-only, live)")
    explore.add_argument("--home", default=DEFAULT_HOME, help="the ledger's home (~/.darwin)")
    explore.add_argument("--once", action="store_true", help="print the peers table and exit")
    explore.add_argument("--json", action="store_true", help="print the peers as JSON and exit")
    explore.add_argument("--model", help="the checkpoint to re-check fraud proofs against")
    explore.set_defaults(run=_explore)


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

    submit = commands.add_parser("submit", help="generate text on the swarm")
    submit.add_argument("prompt", help="the text to continue")
    submit.add_argument("--model", required=True,
                        help="local checkpoint dir (config, tokenizer, embeddings and head)")
    submit.add_argument("--bootstrap", required=True, nargs="+", action="extend",
                        metavar="MULTIADDR", help="swarm peers to join through (/p2p/ addrs)")
    submit.add_argument("--home", default=DEFAULT_HOME,
                        help="the client's identity and ledger (~/.darwin, or $DARWIN_HOME)")
    submit.add_argument("--max-new-tokens", type=int, default=32)
    submit.add_argument("--temperature", type=float, default=0.0, help="0 is greedy")
    submit.add_argument("--top-p", type=float, default=1.0)
    submit.add_argument("--seed", type=int, help="seeds sampling, for a repeatable run")
    submit.add_argument("--json", action="store_true",
                        help="print one JSON object: text, token ids, route, trace, "
                             "verification")
    submit.add_argument("--verify-rate", type=_rate, metavar="P",
                        help="send each hop to a verifier with probability P (default: 1 for "
                             "nodes on probation, less as their reputation rises; 0: never)")
    submit.add_argument("--verify-timeout", type=float, default=120.0, metavar="S",
                        help="seconds a verifier has to challenge, judge and answer")
    submit.set_defaults(run=_submit)

    proof = commands.add_parser("verify-proof", help="re-check a fraud proof file on its own")
    proof.add_argument("file", help="a .proof file (darwin submit writes them under "
                                    "HOME/fraud-proofs)")
    proof.add_argument("--model", required=True, help="local checkpoint dir of the model")
    proof.add_argument("--json", action="store_true", help="print one JSON object")
    proof.set_defaults(run=_verify_proof)

    demo = commands.add_parser("demo", help="run a local swarm of node processes and submit "
                                            "a prompt to it")
    demo.add_argument("--model", help="a local checkpoint dir (default: a generated tiny model)")
    demo.add_argument("--prompt", default="The network of many small machines")
    demo.add_argument("--max-new-tokens", type=int, default=16)
    demo.add_argument("--home", help="where the demo keeps its model and its nodes' homes "
                                     "(~/.cache/darwin/demo)")
    demo.add_argument("--cheater", action="store_true",
                      help="add a node that adds noise to one layer, and show it caught")
    demo.set_defaults(run=_demo)
    _add_ledger_commands(commands)
    return parser


def _configure_logging(verbose: bool) -> None:
    """Quiet by default (the outcome is the output, an error is one line); -v: darwin's debug log
    and libp2p's warnings on stderr. libp2p resets its own logger's level when imported, so its
    records are filtered at our handler. Where logging is already set up (a host program, the
    tests) it is left alone."""
    root = logging.getLogger()
    if root.handlers:
        return
    logging.getLogger("darwin").setLevel(logging.DEBUG if verbose else logging.ERROR)
    libp2p_floor = logging.WARNING if verbose else logging.CRITICAL

    def keep(record: logging.LogRecord) -> bool:
        return not record.name.startswith("libp2p") or record.levelno >= libp2p_floor

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(keep)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except (KeyboardInterrupt, Exception, BaseExceptionGroup) as raised:
        return _report(raised)


def _report(raised: BaseException) -> int:
    """The edge: Ctrl-C is 130, any other error one readable line (details only with -v)."""
    interrupted = isinstance(raised, KeyboardInterrupt) or (
        isinstance(raised, BaseExceptionGroup) and raised.subgroup(KeyboardInterrupt))
    if interrupted:
        err_console.print("interrupted", soft_wrap=True)
        return 130
    exc = _single(raised)
    logger.debug("command failed", exc_info=raised)
    err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
    return 1


def _single(exc: BaseException) -> BaseException:
    """The one exception inside nested one-member groups (trio's nurseries wrap errors)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


if __name__ == "__main__":
    sys.exit(main())
