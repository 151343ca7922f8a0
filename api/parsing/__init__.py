"""Document parsing for the task executors: file bytes -> sections -> chunks.

``parsers`` (text formats, PDF, the table path), ``office`` (DOCX, XLSX, XLS, PPTX) and
``mail`` (e-mail) turn a file into sections; which parser reads which suffix is the
registry in ``api.filetypes``. ``tokens`` counts tokens locally, ``chunker`` merges
sections into chunks ("naive" method), ``limits`` holds the size/time caps read from
the environment, and ``pipeline`` ties them together.
"""
