"""Built-in bias benchmarks (colored-mnist, background-mnist): see the bias-audit issue."""
