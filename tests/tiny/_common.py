"""Helpers the tiny-model builders share: output folders and offline byte-level BPE vocabularies."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["bpe_vocab", "byte_symbols", "make_folder", "write_bpe"]


def make_folder(path: str | Path) -> Path:
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_bpe(folder: Path, vocab: dict[str, int], merges: list[str]) -> tuple[str, str]:
    """Write ``vocab.json`` and ``merges.txt`` (the files a BPE tokenizer is built from) into ``folder``."""
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_file.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return str(vocab_file), str(merges_file)


def bpe_vocab(
    words: list[str], *, end_of_word: str, specials: tuple[str, ...] = ()
) -> tuple[dict[str, int], list[str]]:
    """A byte-level BPE vocabulary: ``specials``, then the 256 byte symbols in GPT-2's order (printable
    ones first, so "!" comes first), each also with ``end_of_word`` when that is set (CLIP's "</w>"),
    then left-to-right merges (``"left right"``) that spell each word of ``words`` whole, bare and, for
    GPT-2/BART, after a space ("Ġ")."""
    symbols = byte_symbols()
    vocab: dict[str, int] = {token: i for i, token in enumerate(specials)}
    for token in symbols:
        vocab.setdefault(token, len(vocab))
    if end_of_word:
        for token in symbols:
            vocab.setdefault(token + end_of_word, len(vocab))
    merges: list[str] = []
    spaced: list[str] = []  # GPT-2/BART: a word after a space is "Ġ" + the whole word, merged last
    for word in dict.fromkeys(words):
        pieces = [*word[:-1], word[-1] + end_of_word]
        left = pieces[0]
        for right in pieces[1:]:
            if f"{left} {right}" not in merges:
                merges.append(f"{left} {right}")
            left += right
            vocab.setdefault(left, len(vocab))
        if not end_of_word:
            spaced.append(f"Ġ {word}")
            vocab.setdefault("Ġ" + word, len(vocab))
    return vocab, merges + spaced


def byte_symbols() -> list[str]:
    """The 256 characters byte-level BPE uses for bytes, in GPT-2's ``bytes_to_unicode`` order."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in printable] + [table[b] for b in range(256) if b not in printable]
