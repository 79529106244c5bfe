"""The commit horizon of the stock feed and the ledger sealer: the transaction id below which
every transaction that could still write to this database has finished.

Rows of ``stock_changes`` and ``inventory_movements`` record their writing transaction's id
(``txid``). A row whose ``txid`` is below the horizon is final (committed or rolled back, and
nothing older can still appear), and every row still to come has a ``txid`` at or above it: so
reading (or numbering) rows in ``(txid, id)`` order below the horizon never skips a row that
commits late, though identity values are not handed out in commit order.

The horizon is the reading snapshot's oldest transaction in flight (``pg_current_snapshot()``),
leaving out those seen running in *other* databases of the server (``pg_stat_activity``): they
cannot write here, and on a shared server they would otherwise hold the feed back for as long
as they run. Anything not positively seen elsewhere (a transaction that just ended, a prepared
one) counts, so the horizon errs on the early side, never late. With nothing in flight it is
the snapshot's ``xmax`` (the next id to be assigned). A long transaction in *this* database
still holds the feed back for as long as it runs: late, never wrong.
"""

from __future__ import annotations

HORIZON = """(
    SELECT (coalesce(
        (SELECT min(x) FROM pg_snapshot_xip(h.snap) AS x
         WHERE xid(x) NOT IN (
             SELECT a.backend_xid FROM pg_stat_activity a
             WHERE a.backend_xid IS NOT NULL
               AND a.datid <> (SELECT d.oid FROM pg_database d
                               WHERE d.datname = current_database()))),
        pg_snapshot_xmax(h.snap))::text)::bigint
    FROM (SELECT pg_current_snapshot() AS snap) h
)"""
"""A scalar SQL subquery (planned as an init plan: evaluated once per statement)."""
