"""Races: two operations on one order at once, from every entry point, checked by invariants.

``test_observed_races`` replays the races reported in the issue as they were seen;
``test_race_matrix`` runs every pair of state-changing operations that can both apply to one
order state. ``OMS_RACE_ROUNDS`` sets how many fresh orders each pair races on (default 3).
"""
