"""Putting recorded text into pages: JSON inside a <script> block, and paths/ids inside URLs.

Recorded text is untrusted (page titles the agent saw, label notes, paths from a run folder from elsewhere).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

# `<` and `>` cover `</script>` and `<!--` (which puts the HTML parser in a state where `</script>` no longer
# ends the block); `&` keeps entities literal; U+2028/2029 end a line in older JavaScript parsers.
_SCRIPT_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def json_for_script(value: Any) -> str:
    """JSON that is safe verbatim inside ``<script type="application/json">`` and parses back to ``value``."""
    return json.dumps(value, ensure_ascii=False).translate(_SCRIPT_ESCAPES)


def url_path(path: str) -> str:
    """Percent-encode each segment of a relative path (``/`` kept), so it cannot leave its URL or attribute."""
    return "/".join(quote(part, safe="") for part in str(path).split("/"))
