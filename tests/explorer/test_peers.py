"""The peer book: scores from the ledger's own reputation, plain counts beside them, folded one
entry at a time; the columns' sorting and filtering."""

from __future__ import annotations

import math
from pathlib import Path

from explorer_support import CHEATER, HONEST, LIAR, NEWCOMER, NOW, VERIFIER

from darwin.explorer.columns import age, matches, sort_rows
from darwin.explorer.peers import PeerBook, PeerStatus, confidence
from darwin.explorer.source import LedgerSource
from darwin.home import LEDGER_FILE
from darwin.ledger import DEFAULT_PARAMS, read_entries, reputation, unknown_score


def test_the_book_scores_as_reputation_does_and_counts_beside_it(home: Path) -> None:
    book = PeerBook.load(LedgerSource.open(home), now_ms=NOW)
    assert book.scores() == reputation(read_entries(home / LEDGER_FILE), now_ms=NOW)
    honest = book.row(HONEST.peer_id)
    assert (honest.served, honest.latency_p50_ms) == (12, 40.0)
    assert honest.verdicts == {"pass": 3, "fail": 1, "unresponsive": 0}
    assert [row.status for row in (book.row(VERIFIER.peer_id), book.row(NEWCOMER.peer_id),
                                   book.row(CHEATER.peer_id))] == [
        PeerStatus.TRUSTED, PeerStatus.PROBATION, PeerStatus.BANNED]
    assert len(book.history[HONEST.peer_id]) > 1 and book.head_seq == 43


def test_folding_the_same_entries_twice_changes_nothing(home: Path) -> None:
    entries = read_entries(home / LEDGER_FILE)
    book = PeerBook(entries[0].signer, now_ms=NOW)
    book.add(entries[:20])
    book.add(entries)  # the first 20 again: skipped by seq
    assert book.scores() == reputation(entries, now_ms=NOW)
    assert book.row(HONEST.peer_id).served == 12


def test_confidence_is_the_beta_interval_half_width() -> None:
    prior = unknown_score(HONEST.peer_id)  # Beta(1, 1): sd = sqrt(1/12)
    assert math.isclose(confidence(prior, DEFAULT_PARAMS), 1.96 * math.sqrt(1 / 12))


def test_sorting_puts_missing_values_last_and_filters_match_ids_and_status(home: Path) -> None:
    rows = PeerBook.load(LedgerSource.open(home), now_ms=NOW).rows()
    by_latency = sort_rows(rows, "p50", descending=True)
    assert by_latency[0].peer == HONEST.peer_id
    assert all(row.latency_p50_ms is None for row in by_latency[1:])
    assert [row.peer for row in rows if matches(row, LIAR.peer_id[-8:].lower(), None)] == [
        LIAR.peer_id]  # any case
    assert [row.peer for row in rows if matches(row, "", PeerStatus.BANNED)] == [CHEATER.peer_id]
    assert {row.peer for row in rows if matches(row, "probation", None)} == {
        NEWCOMER.peer_id, LIAR.peer_id}
    assert (age(None, NOW), age(NOW - 59_000, NOW), age(NOW - 7_200_000, NOW)) == (
        "-", "59s", "2h")
