"""Checks of the family "audits": the model and its data beyond attacks."""
