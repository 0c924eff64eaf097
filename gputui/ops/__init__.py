"""Operator actions, the journal and triage."""
