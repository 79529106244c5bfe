"""Reporting: best sellers, customers, countries, channels, days, and fulfilment KPIs."""
