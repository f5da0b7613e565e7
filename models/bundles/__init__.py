"""bundles."""
