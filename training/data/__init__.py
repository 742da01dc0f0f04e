"""Dataset curation: collect (X API v2 / Apify) or import exports → filter funnel → dedup → human review → export (the
only format train.py reads).

Never imports the trainer; the trainer reads only what export.py writes.
"""
