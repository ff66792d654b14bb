"""The click command line: one thin module per command; the work lives in the stage packages."""
