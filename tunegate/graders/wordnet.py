"""WordNet for METEOR, read from the operating system's copy (never downloaded at run time).

nltk's METEOR matches synonyms through WordNet, and nltk only downloads its corpora on request
(``nltk.download``), which tunegate never does. WordNet 3.0, the version nltk's own corpus
holds, is Debian's ``wordnet-base`` package (``make system-packages`` installs it), laid out in
``/usr/share/wordnet`` in Princeton's database format: the format nltk's reader parses. Only
one file of nltk's corpus is missing there, ``lexnames`` (the numbered list of the 45
lexicographer files that WordNet's own documentation, lexnames(5WN), publishes); it is written
beside copies of the system's files (28 MB) in a folder of this process's own, made the
first time METEOR runs.

``TUNEGATE_WORDNET_DIR`` names another folder in the same format.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

DEFAULT_DIR = Path("/usr/share/wordnet")
ENV = "TUNEGATE_WORDNET_DIR"
# The files of WordNet's database the reader opens.
DATABASE = tuple(f"{kind}.{pos}" for kind in ("data", "index") for pos in ("noun", "verb",
                                                                                "adj", "adv")) + (
    "noun.exc", "verb.exc", "adj.exc", "adv.exc")
# lexnames(5WN): number, name and syntactic category (1 noun, 2 verb, 3 adjective, 4 adverb).
LEXNAMES = (
    ["adj.all 3", "adj.pert 3", "adv.all 4", "noun.Tops 1"]
    + [f"noun.{name} 1" for name in (
        "act", "animal", "artifact", "attribute", "body", "cognition", "communication", "event",
        "feeling", "food", "group", "location", "motive", "object", "person", "phenomenon",
        "plant", "possession", "process", "quantity", "relation", "shape", "state", "substance",
        "time")]
    + [f"verb.{name} 2" for name in (
        "body", "change", "cognition", "communication", "competition", "consumption", "contact",
        "creation", "emotion", "motion", "perception", "possession", "social", "stative",
        "weather")]
    + ["adj.ppl 3"])

_lock = threading.Lock()
_reader: Any = None


class WordNetMissing(RuntimeError):
    """No WordNet database where tunegate looks: METEOR cannot run here."""


def database_dir() -> Path:
    return Path(os.environ.get(ENV) or DEFAULT_DIR)


def missing_reason() -> str | None:
    """Why METEOR cannot run on this host, or None when it can."""
    folder = database_dir()
    absent = [name for name in DATABASE if not (folder / name).is_file()]
    if absent:
        return (f"METEOR needs the WordNet 3.0 database in {folder} (Debian's wordnet-base "
                f"package, installed by `make system-packages`; or set {ENV}); missing: "
                f"{', '.join(absent[:3])}")
    return None


def reader() -> Any:
    """nltk's WordNet reader over the system's database, made once per process."""
    global _reader
    with _lock:
        if _reader is None:
            reason = missing_reason()
            if reason:
                raise WordNetMissing(reason)
            import nltk.data
            folder = _corpus_folder()
            # nltk reads corpora only below the folders of its data path (its guard against
            # planted files): the folder is named there.
            if str(folder) not in nltk.data.path:
                nltk.data.path.append(str(folder))
            with warnings.catch_warnings():
                # No Open Multilingual Wordnet: METEOR compares English words only.
                warnings.simplefilter("ignore", UserWarning)
                _reader = _reader_class()(str(folder), None)
        return _reader


def _corpus_folder() -> Path:
    """The database with nltk's layout: the system's files plus ``lexnames``."""
    source = database_dir()
    if (source / "lexnames").is_file():
        return source
    folder = Path(tempfile.mkdtemp(prefix="tunegate-wordnet-"))
    atexit.register(shutil.rmtree, folder, True)
    for name in DATABASE:
        # Copies: nltk refuses symbolic links out of its corpus folder and hard links alike.
        shutil.copyfile(source / name, folder / name)
    (folder / "lexnames").write_text(
        "".join(f"{number:02d}\t{entry.replace(' ', chr(9))}\n"
                for number, entry in enumerate(LEXNAMES)), encoding="utf-8")
    return folder



def _reader_class() -> type:
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class SystemWordNet(WordNetCorpusReader):  # type: ignore[misc]
        """nltk's reader, minus the mapping of other WordNet versions onto 3.0, which only the
        multilingual lookups use and which would look for nltk's downloaded corpus."""

        def map_wn(self, version: str = "wordnet") -> None:
            return None

    return SystemWordNet
