"""HTTP entry points for changing pending shipments (exceptions, moves, splits, merges); the
rules live in ``oms.orders.shipments``."""
