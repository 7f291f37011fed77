"""Readers, writers and sample data contributed through the npe2 manifest."""
