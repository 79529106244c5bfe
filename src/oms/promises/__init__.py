"""Delivery promises: warehouse calendars, transit times, ship and delivery dates."""
