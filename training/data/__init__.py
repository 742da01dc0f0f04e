"""Data curation: collect (X API / Apify), import, filter, dedup, review, export."""
