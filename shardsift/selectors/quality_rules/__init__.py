"""Web-text quality rules as document-scope filters: Gopher quality and repetition, C4, FineWeb.

Each filter measures its rules with a numba kernel over the batch's Arrow string buffers and drops
a document on the first rule it fails (reason ``<filter>:<rule>``); every measurement reaches the
scores sidecar. See docs/quality_rules.md.
"""
