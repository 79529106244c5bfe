"""HTTP routes for holds on orders and for why an order is not moving (``router``). The holds
themselves belong to the orders context (``oms.orders.holds``)."""
