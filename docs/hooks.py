"""MkDocs hooks for portanet's documentation (listed under ``hooks:`` in mkdocs.yml).

Sphinx roles in docstrings (``:class:`Network```) are shown as plain code, without the role,
and reStructuredText's ``::`` before a code block as one colon.
"""

import re

ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|exc|obj):(?=<code>)")
LITERAL_MARK = re.compile(r"(?<=\w)::(?=</p>)")


def on_page_content(html, page, config, files):
    return LITERAL_MARK.sub(":", ROLE.sub("", html))
