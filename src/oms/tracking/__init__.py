"""The customer-facing tracking page and its JSON, reached by a signed link (``token``)."""
