"""MkDocs hooks for portanet's documentation (listed under ``hooks:`` in mkdocs.yml).

- ``::: portanet.name`` blocks whose module is not in this checkout (modules added by work not
  merged yet) become a note instead of a build error, so the site builds before and after.
- Sphinx roles in docstrings (``:class:`Network```) are shown as plain code, without the role,
  and reStructuredText's ``::`` before a code block as one colon.
"""

import logging
import re
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.portanet")

AUTODOC = re.compile(r"^::: (portanet(?:\.\w+)*)[ \t]*\n(?:[ \t]+\S.*\n)*", re.MULTILINE)
ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|exc|obj):(?=<code>)")
LITERAL_MARK = re.compile(r"(?<=\w)::(?=</p>)")


def _in_checkout(root, name):
    """Whether ``name`` (a module, or an object in one) has its module's source under root."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        path = root.joinpath(*parts[:end])
        if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file():
            return end > 1 or len(parts) == 1
    return False


def on_page_markdown(markdown, page, config, files):
    root = Path(config["config_file_path"]).parent

    def replace(match):
        name = match.group(1)
        if _in_checkout(root, name):
            return match.group(0)
        log.info("%s: module %s is not in this checkout; showing a note", page.file.src_uri, name)
        return (f'!!! note "`{name}` is not in this build"\n'
                f"    Its reference appears here once the module is part of the package.\n")

    return AUTODOC.sub(replace, markdown)


def on_page_content(html, page, config, files):
    return LITERAL_MARK.sub(":", ROLE.sub("", html))
