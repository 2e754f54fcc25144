"""The design documents the code cites are in the repository, where the code says they are."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CITATION = re.compile(r"\b(?:docs/[\w/.-]+\.md|[A-Z]+\.md)\b")


def cited_documents() -> dict[str, set[str]]:
    tracked = subprocess.run(["git", "ls-files", "*.py", "*.html", "*.md"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    cited: dict[str, set[str]] = {}
    for name in tracked:
        for document in CITATION.findall((ROOT / name).read_text(encoding="utf-8")):
            cited.setdefault(document, set()).add(name)
    return cited


def test_every_document_the_code_cites_is_in_the_repository():
    cited = cited_documents()
    assert "docs/design.md" in cited and "docs/style.md" in cited and "docs/providers.md" in cited
    missing = {document: sorted(where) for document, where in cited.items() if not (ROOT / document).is_file()}
    assert missing == {}
