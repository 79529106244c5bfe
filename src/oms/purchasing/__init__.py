"""Suppliers, purchase orders and reordering."""
