"""Train a small byte-level BPE vocabulary and save it exactly in CLIP's on-disk format.

No pretrained CLIP vocabulary can be downloaded here, so the tokenizer fixtures (and any text encoder we train)
use one of ours, laid out the way OpenAI's CLIP vocabulary is (and therefore the way a diffusers / Optimum
`tokenizer/` folder is):

  ids 0..255      the 256 byte symbols in byte-to-unicode order ("!" is id 0, as in CLIP)
  ids 256..511    the same symbols with the end-of-word suffix "</w>" ("!</w>" is 256)
  then            one id per merge, in merge order (the merged symbol)
  then            "<|startoftext|>", "<|endoftext|>"

Files written to --out:
  vocab.json               JSON, indent 2, keys sorted, non-ASCII kept (what transformers' save_vocabulary writes)
  merges.txt               "#version: 0.2" then one "left right" merge a line, in rank order
  special_tokens_map.json  bos/eos/unk as AddedToken dicts; pad "<|endoftext|>" (--pad eos, SD 1.x) or "!" (--pad bang, SD 2.x / SDXL tokenizer_2)
  tokenizer_config.json    the legacy layout (special tokens as {"__type": "AddedToken", ...}); with --added-tokens-decoder
                           the newer layout that carries "added_tokens_decoder" instead (which makes transformers ignore
                           special_tokens_map.json); --config-pad sets this file's "pad_token" independently (SD 2.x's
                           Hub folder says "<|endoftext|>" here and "!" in special_tokens_map.json)
  tokenizer.json           only with --tokenizer-json: the fast-tokenizer form (what transformers' CLIPConverter builds);
                           with --only-tokenizer-json, vocab.json and merges.txt are not written (a transformers v5 export)

Training: the corpus is cleaned and split the way CLIP splits text (lowercase, whitespace collapsed, the CLIP regex:
contractions, letter runs, single digits, runs of other symbols), each piece is mapped to byte symbols with "</w>" on
its last one, and the most frequent adjacent pair is merged until --merges merges exist (ties: the smallest pair in
code-point order) or no pair occurs twice.

Usage: python3 tools/make_bpe_vocab.py --out DIR [--merges 800] [--pad eos|bang] [--corpus FILE] [--added-tokens-decoder]
"""
import argparse
import json
import os
import sys
import unicodedata
from collections import Counter

try:
    import regex as re
except ImportError:  # the stdlib has no \p{..}; the corpus below is ASCII, for which these classes are exact
    import re

    SPLIT = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+|_+")
else:
    SPLIT = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+")

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
EOW = "</w>"

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
COLOURS = ["red", "green", "blue", "yellow", "cyan", "magenta", "white", "black", "orange", "purple", "pink", "brown",
           "gray", "grey"]
TEMPLATES = [
    "a {f} {d} on a {b} background",
    "the digit {d} in {f} on {b}",
    "a {f} number {n} on a {b} background",
    "{d}, {f}, on {b}",
    "a photo of a {f} {d} over a {b} field",
    "handwritten {d} painted {f}; background {b}",
]
GENERAL = """
a photo of a cat sitting on a wooden chair in the sun
a painting of a mountain lake at sunset, oil on canvas
portrait of an old man with a grey beard, highly detailed, sharp focus
a futuristic city at night with neon lights and flying cars
an astronaut riding a horse on the moon, digital art
a bowl of fruit on a kitchen table, still life
watercolor illustration of a fox in a snowy forest
a close-up photograph of a red rose with water drops
the quick brown fox jumps over the lazy dog
a small house by the river under a starry sky
masterpiece, best quality, trending on artstation, 4k, 8k, ultra realistic
a castle on a hill surrounded by clouds, fantasy landscape
a dog playing with a ball in the park
two people walking on the beach at dawn
an abstract pattern of circles and lines in bright colors
a vintage car parked in front of a cafe
a bird flying over the ocean, cinematic lighting
a cozy living room with a fireplace and bookshelves
a robot reading a book in a library
it's a beautiful day, isn't it? we'll see what they're doing, i'm sure you've heard, i'd say so
hello world! this is a test. what's going on? yes, no, maybe...
the year 2024 was warm; 3 apples, 12 eggs and 100 grams of flour
café crème brûlée, a naïve résumé, Zürich über alles, señor niño
東京の夜景 日本の風景 富士山
😀 smiling face 😀, 🎨 palette, ❤ heart
"""


def bytes_to_unicode():
    """Byte -> printable character table of GPT-2/CLIP, in CLIP's vocabulary order (printable bytes first)."""
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    order = keep + [b for b in range(256) if b not in keep]
    return [(b, table[b]) for b in order]


def default_corpus():
    lines = []
    for i, d in enumerate(DIGITS):
        for j, f in enumerate(COLOURS):
            for k, b in enumerate(COLOURS):
                if f == b:
                    continue
                t = TEMPLATES[(i + 3 * j + 5 * k) % len(TEMPLATES)]
                lines.append(t.format(f=f, b=b, d=d, n=i))
    general = [s.strip() for s in GENERAL.strip().splitlines() if s.strip()]
    lines.extend(general * 20)  # weight the general English so its words get merges too
    return lines


def pieces(text):
    text = " ".join(unicodedata.normalize("NFC", text).split()).lower()
    return SPLIT.findall(text)


def train(lines, n_merges):
    enc = dict(bytes_to_unicode())
    words = Counter()
    for line in lines:
        for p in pieces(line):
            sym = [enc[b] for b in p.encode("utf-8")]
            sym[-1] += EOW
            words[tuple(sym)] += 1
    words = {w: c for w, c in words.items()}
    merges = []
    while len(merges) < n_merges:
        pairs = Counter()
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        best_count = max(pairs.values())
        if best_count < 2:
            break
        best = min(p for p, c in pairs.items() if c == best_count)
        merges.append(best)
        joined = best[0] + best[1]
        new_words = {}
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == best[0] and w[i + 1] == best[1]:
                    out.append(joined)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            t = tuple(out)
            new_words[t] = new_words.get(t, 0) + c
        words = new_words
    return merges


def added(content, normalized=True, typed=False, special=None):
    d = {"content": content, "lstrip": False, "normalized": normalized, "rstrip": False, "single_word": False}
    if special is not None:
        d["special"] = special
    if typed:
        d = {"__type": "AddedToken", **d}
    return d


def tokenizer_json(vocab, merges, added_tokens):
    """The fast-tokenizer form of a CLIP tokenizer (the pipeline transformers' CLIPConverter builds)."""
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added_tokens,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"},
            {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
            {"type": "Lowercase"},
        ]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+"},
             "behavior": "Removed", "invert": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        ]},
        "post_processor": {"type": "RobertaProcessing", "sep": [EOS, vocab[EOS]], "cls": [BOS, vocab[BOS]],
                           "trim_offsets": False, "add_prefix_space": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": EOS, "continuing_subword_prefix": "",
                  "end_of_word_suffix": EOW, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [[a, b] for a, b in merges]},
    }


def dump(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--merges", type=int, default=800)
    ap.add_argument("--pad", choices=["eos", "bang"], default="eos")
    ap.add_argument("--config-pad", choices=["eos", "bang"], default=None)
    ap.add_argument("--corpus", help="a UTF-8 text file, one caption a line (default: built-in captions)")
    ap.add_argument("--added-tokens-decoder", action="store_true")
    ap.add_argument("--tokenizer-json", action="store_true")
    ap.add_argument("--only-tokenizer-json", action="store_true")
    ap.add_argument("--max-length", type=int, default=77)
    a = ap.parse_args(argv)

    if a.corpus:
        with open(a.corpus, encoding="utf-8") as f:
            lines = [s for s in f.read().splitlines() if s.strip()]
    else:
        lines = default_corpus()
    merges = train(lines, a.merges)
    symbols = [c for _, c in bytes_to_unicode()]
    order = symbols + [s + EOW for s in symbols] + [x + y for x, y in merges] + [BOS, EOS]
    vocab = {}
    for tok in order:
        if tok in vocab:
            sys.exit(f"duplicate vocabulary entry {tok!r}")
        vocab[tok] = len(vocab)

    pad = EOS if a.pad == "eos" else "!"
    config_pad = pad if a.config_pad is None else (EOS if a.config_pad == "eos" else "!")
    os.makedirs(a.out, exist_ok=True)
    if not a.only_tokenizer_json:
        with open(os.path.join(a.out, "vocab.json"), "w", encoding="utf-8") as f:
            f.write(json.dumps(vocab, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        with open(os.path.join(a.out, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n")
            for x, y in merges:
                f.write(f"{x} {y}\n")
        dump(os.path.join(a.out, "special_tokens_map.json"), {
            "bos_token": added(BOS), "eos_token": added(EOS), "pad_token": pad, "unk_token": added(EOS)})

    if a.added_tokens_decoder or a.only_tokenizer_json:
        decoder = {}
        if pad != EOS:
            decoder[str(vocab[pad])] = added(pad, normalized=False, special=True)
        decoder[str(vocab[BOS])] = added(BOS, special=True)
        decoder[str(vocab[EOS])] = added(EOS, special=True)
        config = {"add_prefix_space": False, "added_tokens_decoder": decoder, "bos_token": BOS,
                  "clean_up_tokenization_spaces": True, "do_lower_case": True, "eos_token": EOS, "errors": "replace",
                  "model_max_length": a.max_length, "pad_token": config_pad, "tokenizer_class": "CLIPTokenizer",
                  "unk_token": EOS}
    else:
        config = {"add_prefix_space": False, "bos_token": added(BOS, typed=True), "do_lower_case": True,
                  "eos_token": added(EOS, typed=True), "errors": "replace", "model_max_length": a.max_length,
                  "name_or_path": "dq-studio/clip-toy", "pad_token": config_pad,
                  "special_tokens_map_file": "./special_tokens_map.json", "tokenizer_class": "CLIPTokenizer",
                  "unk_token": added(EOS, typed=True)}
    dump(os.path.join(a.out, "tokenizer_config.json"), config)

    if a.tokenizer_json or a.only_tokenizer_json:
        toks = []
        if pad != EOS:
            toks.append({"id": vocab[pad], **added(pad, normalized=False, special=True)})
        toks.append({"id": vocab[BOS], **added(BOS, special=True)})
        toks.append({"id": vocab[EOS], **added(EOS, special=True)})
        with open(os.path.join(a.out, "tokenizer.json"), "w", encoding="utf-8") as f:
            f.write(json.dumps(tokenizer_json(vocab, merges, toks), ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"{a.out}: {len(vocab)} tokens, {len(merges)} merges, pad {pad!r} (id {vocab[pad]})")


if __name__ == "__main__":
    main()
