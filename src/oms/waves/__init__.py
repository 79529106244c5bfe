"""Waves: orders of a channel held back from the pick queue until a wave re-optimises them
together (the model: ``oms.routing.wave``; the work: ``oms.flows.waves``)."""
