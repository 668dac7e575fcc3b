"""Documents for RAFT: read .txt / .md / .pdf / .docx / .html into text, then cut into token chunks.

.pdf goes through pypdf; .docx (its word/document.xml) and .html through the standard library, so no
converter with a large dependency tree is needed. A file that cannot be read is refused in one line.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

from ftspace.errors import DataError

SUFFIXES = (".txt", ".md", ".markdown", ".pdf", ".docx", ".html", ".htm")


@dataclass
class Chunk:
    id: str  # "<document>#<n>"
    document: str
    text: str


def document_files(paths: list[str | Path]) -> list[Path]:
    """The readable documents among files and folders (a folder: its files, recursively, sorted)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES)
        elif p.is_file():
            if p.suffix.lower() not in SUFFIXES:
                raise DataError(f"{p.name}: not a document ftspace reads: use {', '.join(SUFFIXES)}.")
            out.append(p)
        else:
            raise DataError(f"{p.name}: no such file or folder.")
    if not out:
        raise DataError("no documents found: give .txt, .md, .pdf, .docx or .html files (or a folder of them).")
    return out


def read_document(path: Path) -> str:
    suffix = path.suffix.lower()
    try:
        if suffix == ".pdf":
            text = _pdf(path)
        elif suffix == ".docx":
            text = _docx(path)
        elif suffix in (".html", ".htm"):
            text = _html(path.read_text(encoding="utf-8", errors="replace"))
        else:
            text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path.name}: not UTF-8 text (byte {e.start}): save it as UTF-8.") from None
    except (zipfile.BadZipFile, ElementTree.ParseError, KeyError):
        raise DataError(f"{path.name}: not a readable .docx file: open and save it again in Word or LibreOffice.") from None
    from ftspace import limits

    limits.check("document_mb", round(len(text.encode()) / 1e6, 1), f"{path.name}: its text")
    text = re.sub(r"[ \t]+\n", "\n", text).strip()
    if not text:
        raise DataError(f"{path.name}: no text found" + (" (a scanned PDF holds images: run OCR on it first)."
                                                        if suffix == ".pdf" else "."))
    return text


def _pdf(path: Path) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        return "\n\n".join((page.extract_text() or "").strip() for page in reader.pages)
    except (PdfReadError, ValueError, OSError) as e:
        raise DataError(f"{path.name}: not a readable PDF ({str(e).splitlines()[0][:80]}).") from None


def _docx(path: Path) -> str:
    ns = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
    from ftspace import limits

    with zipfile.ZipFile(path) as z:
        size = z.getinfo("word/document.xml").file_size  # as the archive declares it; read no further than that
        limits.check("document_mb", round(size / 1e6, 1), f"{path.name}: its text after decompression")
        with z.open("word/document.xml") as fh:
            data = fh.read(size + 1)
        if len(data) > size:
            raise DataError(f"{path.name}: the archive says one size and holds more: not a readable .docx file.")
        root = ElementTree.fromstring(data)
    paragraphs = ("".join(t.text or "" for t in p.iter(ns + "t")) for p in root.iter(ns + "p"))
    return "\n\n".join(p for p in paragraphs if p.strip())


class _Text(HTMLParser):
    BLOCKS = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section", "article", "pre"}

    def __init__(self):
        super().__init__()
        self.parts, self._skip = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "nav", "header", "footer"):
            self._skip += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style", "nav", "header", "footer"):
            self._skip = max(0, self._skip - 1)

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def _html(html: str) -> str:
    p = _Text()
    p.feed(html)
    text = "".join(p.parts)
    return re.sub(r"\n\s*\n+", "\n\n", re.sub(r"[ \t]+", " ", text))


def token_encoder():
    """Text -> token offsets, with the bundled model's tokenizer (the `tokenizers` library alone: no
    transformers in the app process). Chunk sizes are in that model's tokens."""
    from tokenizers import Tokenizer

    from ftspace.models import default_model_dir

    path = default_model_dir() / "tokenizer.json"
    if not path.exists():
        from ftspace import offload

        offload.call("ftspace.models:default_model_path")  # converts the bundled GGUF once
    tok = Tokenizer.from_file(str(path))
    return lambda text: tok.encode(text, add_special_tokens=False).offsets


def chunk(name: str, text: str, size: int, overlap: int, offsets=None) -> list[Chunk]:
    """Windows of `size` tokens, each repeating `overlap` tokens of the one before, ending at a sentence or
    line end where one falls in the window's last quarter.

    >>> [c.text for c in chunk("d", "One two. Three four. Five six seven.", 5, 1, offsets=_word_offsets)]
    ['One two. Three four.', 'four. Five six seven.']
    """
    spans = (offsets or token_encoder())(text)
    chunks, start, n = [], 0, 0
    while start < len(spans):
        end = min(start + size, len(spans))
        if end < len(spans):
            for cut in range(end, start + max(1, size * 3 // 4), -1):  # prefer a sentence end
                if re.search(r"[.!?:;]\s*$|\n\s*$", text[spans[start][0]:spans[cut - 1][1]]):
                    end = cut
                    break
        piece = text[spans[start][0]:spans[end - 1][1]].strip()
        if piece:
            n += 1
            chunks.append(Chunk(id=f"{name}#{n}", document=name, text=piece))
        if end >= len(spans):
            break
        start = max(end - overlap, start + 1)
    return chunks


def _word_offsets(text: str):
    return [m.span() for m in re.finditer(r"\S+", text)]
