"""Report tables, figures, HTML, summaries and CI gates."""
