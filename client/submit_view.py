"""A submission in the terminal: header, tokens as they come, then route, trace and verdicts.

One view for `darwin submit` and every generation of `darwin demo`, so they read the same.
"""

from __future__ import annotations

import trio
from rich.console import Console

from darwin.client.detokenize import TextStream
from darwin.client.submit import (
    Submission,
    SubmitResult,
    route_table,
    trace_summary,
    verification_summary,
)


def run_in_console(submission: Submission, console: Console) -> SubmitResult:
    """Run `submission`, streaming its text to `console`, and show its evidence.

    Raises:
        Whatever `Submission.run` raises.
    """
    console.print(f"[bold]model[/bold] {submission.config.model} ({submission.n_layers} "
                  f"blocks), id {submission.model_id.hex()[:16]}…")
    console.print(f"[bold]prompt[/bold] {submission.config.prompt}")
    console.print("[bold]output[/bold] ", end="")
    stream = TextStream(submission.tokenizer)
    result = trio.run(submission.run,
                      lambda token: console.print(stream.push(token), end="", markup=False))
    console.print()
    console.print(route_table(result))
    console.print(trace_summary(result))
    console.print(verification_summary(result))
    return result
