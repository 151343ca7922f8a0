"""Document parsing for the task executors: file bytes -> sections -> chunks.

``tokens`` counts tokens locally, ``parsers`` turns a file into sections per
type, ``chunker`` merges sections into chunks ("naive" method), ``limits`` holds
the size/time caps read from the environment, and ``pipeline`` ties them together.
"""
