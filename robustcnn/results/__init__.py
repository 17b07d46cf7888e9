"""Results: the long-table schema and row helpers, figure helpers, and the report-folder writer."""
