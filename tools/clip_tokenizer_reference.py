"""Reference token ids for CLIP tokenizer folders, computed independently of the TypeScript tokenizer.

What it implements: Hugging Face transformers' slow `CLIPTokenizer` (v4) as diffusers and Optimum's ONNX pipelines call
it (`tokenizer(prompt, padding="max_length", max_length=model_max_length, truncation=True)`), in the configuration most
installations have: without the optional `ftfy` package, where the text is cleaned by BERT's BasicTokenizer
(strip_accents=False, no punctuation split). Written from the description of those semantics, in plain Python
(stdlib + the `regex` module for \\p{L} / \\p{N}):

 1. Special and added tokens are cut out of the raw text first, leftmost-longest (bos, eos, unk, pad and any
    added token: "!" is one when it is the pad token, which is why SD 2.x / SDXL tokenizer_2 map every "!" to id 0).
 2. Each remaining piece is cleaned: NUL, U+FFFD and control/format characters (category C*, except tab, newline and
    carriage return) are dropped, whitespace (those three, space, category Zs) becomes a space, CJK ideographs get a
    space on both sides; then NFC, split on whitespace, lowercase, joined by single spaces.
 3. The CLIP regex splits it (<|startoftext|>, <|endoftext|>, contractions, letter runs, single digits, runs of
    anything else); each piece is mapped byte-wise to CLIP's printable byte symbols, "</w>" is glued to its last symbol,
    and the adjacent pair with the lowest merge rank is merged (every occurrence, left to right) until none is ranked.
 4. Ids come from vocab.json (unknown -> unk id). Then <bos> + the first model_max_length-2 ids + <eos>, padded to
    model_max_length with the pad token's id.

Files read, as transformers v4 reads them: vocab.json + merges.txt (the "#version" header line skipped, at most 48,894
merges as transformers slices them) or, without them, the vocabulary and merges inside tokenizer.json. Special tokens
come from tokenizer_config.json; when it has no "added_tokens_decoder" (the legacy layout), special_tokens_map.json
overrides its values and added_tokens.json adds tokens; tokenizer.json's "added_tokens" are added too. Defaults are
CLIPTokenizer's: bos <|startoftext|>, eos/unk/pad <|endoftext|>. model_max_length defaults to 77 here (transformers
would not pad at all without it; CLIP's text encoders have 77 positions).

"dropped" is the text of the ids that truncation cut (joined symbols, bytes decoded as UTF-8 with replacement,
"</w>" read as a space, trimmed): what a pipeline warns about.

Usage: python3 tools/clip_tokenizer_reference.py [--fixtures test/fixtures/tokenizers] [--out .../reference-ids.json]
Rebuild the fixture folders first with tools/make_bpe_vocab.py (see test/fixtures/tokenizers/README.md).
"""
import argparse
import json
import os
import sys
import unicodedata

try:
    import regex
except ImportError:
    sys.exit("this tool needs the `regex` module (\\p{L} and \\p{N} classes): pip install regex")

MAX_MERGES = 49152 - 256 - 2
PATTERN = regex.compile(
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+", regex.IGNORECASE)
CJK = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
       (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)]
SPECIAL_KEYS = ["bos_token", "eos_token", "unk_token", "pad_token"]


def byte_symbols():
    """byte value -> the printable character CLIP uses for it (printable Latin-1 bytes are themselves)."""
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    out, shift = {}, 0
    for b in range(256):
        if b in printable:
            out[b] = chr(b)
        else:
            out[b] = chr(0x100 + shift)
            shift += 1
    return out


BYTE_TO_SYM = byte_symbols()
SYM_TO_BYTE = {v: k for k, v in BYTE_TO_SYM.items()}


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def token_text(v):
    """A special-token entry as written in the configs: a string, or an AddedToken dict."""
    if v is None:
        return None
    if isinstance(v, dict):
        return v["content"]
    return v


class Tokenizer:
    def __init__(self, folder):
        def p(name):
            return os.path.join(folder, name)

        if os.path.exists(p("vocab.json")) and os.path.exists(p("merges.txt")):
            self.vocab = read_json(p("vocab.json"))
            with open(p("merges.txt"), encoding="utf-8") as f:
                lines = f.read().split("\n")
            if lines and lines[0].startswith("#version"):
                lines = lines[1:]
            merges = [tuple(line.split()) for line in lines if line.strip()]
            self.source = "vocab.json+merges.txt"
            fast_added = []
        else:
            tj = read_json(p("tokenizer.json"))
            model = tj["model"]
            self.vocab = model["vocab"]
            merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
            self.source = "tokenizer.json"
            fast_added = tj.get("added_tokens") or []
        self.ranks = {m: i for i, m in enumerate(merges[:MAX_MERGES])}

        config = read_json(p("tokenizer_config.json")) if os.path.exists(p("tokenizer_config.json")) else {}
        specials = {k: token_text(config.get(k)) for k in SPECIAL_KEYS}
        added = {}  # content -> (id, lstrip, rstrip)
        if "added_tokens_decoder" in config:
            for idx, t in config["added_tokens_decoder"].items():
                added[t["content"]] = (int(idx), bool(t.get("lstrip")), bool(t.get("rstrip")))
        else:
            if os.path.exists(p("special_tokens_map.json")):
                for k, v in read_json(p("special_tokens_map.json")).items():
                    if k in SPECIAL_KEYS:
                        specials[k] = token_text(v)
            if os.path.exists(p("added_tokens.json")):
                for content, idx in read_json(p("added_tokens.json")).items():
                    added[content] = (int(idx), False, False)
        for t in fast_added:
            added.setdefault(t["content"], (int(t["id"]), bool(t.get("lstrip")), bool(t.get("rstrip"))))
        defaults = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
                    "pad_token": "<|endoftext|>"}
        for k, d in defaults.items():
            if not specials.get(k):
                specials[k] = d
        for k in SPECIAL_KEYS:
            s = specials[k]
            if s not in added:
                if s not in self.vocab:
                    raise SystemExit(f"{folder}: {k} {s!r} is not in the vocabulary")
                added[s] = (self.vocab[s], False, False)
        self.added = added
        self.ids = {k: added[specials[k]][0] for k in SPECIAL_KEYS}
        self.max_length = int(config.get("model_max_length") or 77)
        if self.max_length > 1_000_000:
            self.max_length = 77
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        for content, (i, _, _) in added.items():
            self.id_to_token.setdefault(i, content)
        self.cache = {}

    # 1. cut added tokens out of the raw text (leftmost, then longest)
    def split_added(self, text):
        parts, start, i = [], 0, 0
        contents = sorted(self.added, key=len, reverse=True)
        while i < len(text):
            hit = next((c for c in contents if text.startswith(c, i)), None)
            if hit is None:
                i += 1
                continue
            if i > start:
                parts.append(text[start:i])
            parts.append(hit)
            i += len(hit)
            start = i
        if start < len(text):
            parts.append(text[start:])
        for k, part in enumerate(parts):
            if part in self.added:
                _, lstrip, rstrip = self.added[part]
                if rstrip and k + 1 < len(parts) and parts[k + 1] not in self.added:
                    parts[k + 1] = parts[k + 1].lstrip()
                if lstrip and k > 0 and parts[k - 1] not in self.added:
                    parts[k - 1] = parts[k - 1].rstrip()
        return parts

    # 2. BasicTokenizer cleaning
    @staticmethod
    def clean(text):
        out = []
        for ch in text:
            cp = ord(ch)
            if ch in "\t\n\r" or ch == " " or unicodedata.category(ch) == "Zs":
                out.append(" ")
            elif cp == 0 or cp == 0xFFFD or unicodedata.category(ch).startswith("C"):
                continue
            elif any(lo <= cp <= hi for lo, hi in CJK):
                out.append(" " + ch + " ")
            else:
                out.append(ch)
        text = unicodedata.normalize("NFC", "".join(out))
        return " ".join(w.lower() for w in text.split())

    # 3. BPE of one pre-tokenized piece
    def bpe(self, piece):
        if piece in ("<|startoftext|>", "<|endoftext|>"):
            return [piece]
        if piece in self.cache:
            return self.cache[piece]
        word = list(piece[:-1]) + [piece[-1] + "</w>"]
        while len(word) > 1:
            best, best_rank = None, None
            for pair in zip(word, word[1:]):
                r = self.ranks.get(pair)
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = pair, r
            if best is None:
                break
            merged, k = [], 0
            while k < len(word):
                if k + 1 < len(word) and word[k] == best[0] and word[k + 1] == best[1]:
                    merged.append(best[0] + best[1])
                    k += 2
                else:
                    merged.append(word[k])
                    k += 1
            word = merged
        self.cache[piece] = word
        return word

    def content_ids(self, text):
        ids = []
        for part in self.split_added(text):
            if not part:
                continue
            if part in self.added:
                ids.append(self.added[part][0])
                continue
            for piece in PATTERN.findall(self.clean(part)):
                sym = "".join(BYTE_TO_SYM[b] for b in piece.encode("utf-8"))
                for t in self.bpe(sym):
                    ids.append(self.vocab.get(t, self.ids["unk_token"]))
        return ids

    def decode(self, ids):
        s = "".join(self.id_to_token[i] for i in ids)
        raw = bytes(SYM_TO_BYTE[c] for c in s)
        return raw.decode("utf-8", errors="replace").replace("</w>", " ").strip()

    def encode(self, text):
        content = self.content_ids(text)
        keep = self.max_length - 2
        ids = [self.ids["bos_token"]] + content[:keep] + [self.ids["eos_token"]]
        ids += [self.ids["pad_token"]] * (self.max_length - len(ids))
        out = {"ids": ids, "tokens": len(content)}
        if len(content) > keep:
            out["dropped"] = self.decode(content[keep:])
        return out


def prompts():
    digits = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    colours = ["red", "green", "blue", "yellow", "cyan", "magenta", "white", "black", "orange", "purple"]
    out = []
    # captions like the ones the vocabulary was trained on
    for i, d in enumerate(digits):
        f, b = colours[i], colours[(i * 3 + 1) % len(colours)]
        out.append(f"a {f} {d} on a {b} background")
        out.append(f"A {f.upper()} {d.capitalize()} On A {b.capitalize()} Background")
    out += [f"the digit {n} in {colours[n]} on {colours[9 - n]}" for n in range(10)]
    # general English, contractions, mixed case
    out += [
        "a photo of a cat sitting on a wooden chair in the sun",
        "Portrait of an OLD man with a Grey Beard, highly detailed, sharp focus",
        "an astronaut riding a horse on the moon, digital art",
        "it's a dog's life; they're here, we've won, I'm sure you'll see, he'd go",
        "IT'S DON'T WON'T Y'ALL o'clock rock'n'roll",
        "don't", "'s", "'S", "''", "'tis", "'s's's", "the cat's hat's", "isn't it?",
        "SHOUTING CAPS", "camelCaseWord", "MiXeD cAsE tExT", "unseen words: zyzzyva quixotic xylophone",
        "supercalifragilisticexpialidocious", "a",
    ]
    # digits and numbers: every digit is its own token
    out += [
        "0", "7", "42", "1234567890", "3.14159", "1,000,000", "2024-12-31", "v1.5", "sd_xl_base_1.0", "4k 8k uhd",
        "0.5x zoom", "#1 best", "100%", "$9.99", "12:30 pm", "(masterpiece:1.2)", "1st 2nd 3rd 4th", "x²+y²", "½ ¾ ⅓",
        "٣ ٤ ٥ arabic-indic digits", "१२३ devanagari digits", "Ⅻ roman numeral",
    ]
    # punctuation
    out += [
        "hello, world.", "what?", "wait...", "a--b", "a---b---c", "(a) [b] {c} <d>", "\"quoted\" text", "“curly” ‘quotes’",
        "semi;colon:colon", "slash/back\\slash", "pipe | bar", "a_b_c", "@user #tag", "email@example.com",
        "https://example.com/path?x=1&y=2#frag", "~!@#$%^&*()_+`-={}|[]\\:\";'<>?,./", "…", "— – -", "«guillemets»",
        "¿qué? ¡sí!", "<|startoftext|>", "<|endoftext|>", "a <|endoftext|> b", "<|startoftext|>x<|endoftext|>y",
        "<|endoftext|><|endoftext|>", "<|endof text|>", "a <|ENDOFTEXT|> b", "X<|EndOfText|>y", "<|STARTOFTEXT|>", "<|startoftext", "endoftext|>",
    ]
    # "!" (id 0 and an added token in pad-"!" tokenizers)
    out += [
        "!", "!!", "!!!", "! !! !!!", "wow!", "a red seven!", "!a!b!", "?!?", "!?", "hello ! world", "!important",
        "stop!!! now!!!", "yes!1!", "!!!!!!!!!!", "(!)", "'!'", "it's great!", "A BLUE ONE!", "!\n!\t!", "¡!",
    ]
    # unicode
    out += [
        "café", "cafe\u0301", "naïve résumé", "crème brûlée", "Ünïcödé", "Zürich über alles", "señor niño",
        "ÀÉÎÕÜ", "İstanbul", "ΟΔΟΣ final sigma", "Ελληνικά", "русский текст", "Straße ß", "ﬁ ligature",
        "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ", "東京の夜景", "日本の風景 富士山", "中文提示词", "한국어 텍스트", "ひらがな カタカナ",
        "עברית", "العربية", "हिन्दी", "ไทย", "😀", "😀😀😀", "🎨 palette", "❤ heart", "❤️ heart", "👨‍👩‍👧 family",
        "🇯🇵 flag", "🐱‍👤", "a😀b", "smile😀", "∑∫√∞≠≈", "→ ← ↑ ↓", "©®™", "°C", "µm", "§ ¶ †",
    ]
    # whitespace and invisible characters
    out += [
        "", " ", "   ", "\t", "\n", "a    b", " leading", "trailing  ", "tab\tsep", "new\nline", "cr\r\nlf",
        "multi\n\n\nline", "nb\u00a0space", "ideographic\u3000space", "em\u2003space", "zero\u200bwidth",
        "\ufeffbom", "soft\u00adhyphen", "nul\x00char", "bell\x07char", "vt\x0bff\x0c", "repl\ufffdchar",
        "line\u2028sep", "a \t\n b", "  a  red   seven  ",
    ]
    # long prompts (> 75 content tokens: truncated)
    caption = "a red seven on a blue background"
    out += [
        ", ".join([caption] * 12),
        " ".join(["red"] * 74), " ".join(["red"] * 75), " ".join(["red"] * 76), " ".join(["red"] * 77),
        " ".join(["red"] * 200),
        "0123456789" * 10,
        "!" * 100,
        "! " * 90,
        "wow! " * 40,
        "日本の風景 " * 30,
        "😀" * 40,
        "café " * 80,
        "masterpiece, best quality, ultra detailed, 8k, " * 8,
        ("a photo of a cat sitting on a wooden chair in the sun, a painting of a mountain lake at sunset, oil on canvas, "
         "portrait of an old man with a grey beard, highly detailed, sharp focus, a futuristic city at night with neon "
         "lights and flying cars, an astronaut riding a horse on the moon, digital art, a bowl of fruit on a kitchen "
         "table, still life, watercolor illustration of a fox in a snowy forest"),
        "zyzzyva " * 20,
        " ".join(f"{c} {d}" for c in colours for d in digits[:3]),
        "x" * 500,
        "a" + "!" * 80 + "b",
        "Ünïcödé Ünïcödé " * 25,
    ]
    seen, uniq = set(), []
    for s in out:
        if s not in seen:
            seen.add(s)
            uniq.append(s)
    return uniq


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description="reference ids for the CLIP tokenizer fixtures")
    ap.add_argument("--fixtures", default=os.path.join(here, "..", "test", "fixtures", "tokenizers"))
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    out_path = a.out or os.path.join(a.fixtures, "reference-ids.json")
    names = sorted(d for d in os.listdir(a.fixtures) if os.path.isdir(os.path.join(a.fixtures, d)))
    toks = {n: Tokenizer(os.path.join(a.fixtures, n)) for n in names}
    cases = []
    for prompt in prompts():
        case = {"prompt": prompt}
        for n, t in toks.items():
            case[n] = t.encode(prompt)
        cases.append(case)
    doc = {
        "about": "written by tools/clip_tokenizer_reference.py: HF CLIPTokenizer (transformers v4 slow, no ftfy) "
                 "semantics, padding='max_length', truncation=True; do not edit by hand",
        "tokenizers": {n: {"source": t.source, "max_length": t.max_length, "bos_id": t.ids["bos_token"],
                           "eos_id": t.ids["eos_token"], "pad_id": t.ids["pad_token"]} for n, t in toks.items()},
        "cases": cases,
    }
    with open(out_path, "w", encoding="utf-8") as f:
        f.write("{\n")
        f.write(f'"about": {json.dumps(doc["about"])},\n')
        f.write(f'"tokenizers": {json.dumps(doc["tokenizers"])},\n')
        f.write('"cases": [\n')
        f.write(",\n".join(json.dumps(c, ensure_ascii=True, separators=(",", ":")) for c in cases))
        f.write("\n]\n}\n")
    truncated = sum(1 for c in cases if any("dropped" in c[n] for n in names))
    print(f"{out_path}: {len(cases)} prompts x {len(names)} tokenizers ({', '.join(names)}); {truncated} truncated")


if __name__ == "__main__":
    main()
