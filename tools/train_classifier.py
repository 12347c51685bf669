"""Train the embedded MNIST classifier and export it to ONNX.

Usage: /usr/bin/python3 tools/train_classifier.py [--out models/mnist-classifier] [--epochs 20] [--seed 0]

Inputs: `image` float32 [B, 1, 28, 28] in [0, 1]. Outputs: `logits` [B, 10] and `features` [B, 128]
(penultimate layer, for Frechet distances). Seeded; logs to stdout and to <out>/train-log.txt.
"""
import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import mnist_data


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 32, 3, padding=1)
        self.c2 = nn.Conv2d(32, 32, 3, padding=1)
        self.c3 = nn.Conv2d(32, 64, 3, padding=1)
        self.c4 = nn.Conv2d(64, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)
        self.drop = nn.Dropout(0.3)

    def forward(self, x):
        x = F.relu(self.c1(x))
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        x = F.relu(self.c3(x))
        x = F.max_pool2d(F.relu(self.c4(x)), 2)
        feats = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(self.drop(feats)), feats


def augment(x, gen):
    """Random shifts of up to 2 pixels and small affine jitter."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=gen) - 0.5) * 0.35
    scale = 1 + (torch.rand(n, generator=gen) - 0.5) * 0.2
    shift = (torch.rand(n, 2, generator=gen) - 0.5) * (4 / 14)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "models", "mnist-classifier"))
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    log = open(os.path.join(args.out, "train-log.txt"), "w")

    def say(msg):
        print(msg, flush=True)
        log.write(msg + "\n")
        log.flush()

    tx, ty, vx, vy = (torch.from_numpy(a) for a in mnist_data.load())
    say(f"train {len(tx)} held-out {len(vx)} seed {args.seed} torch {torch.__version__}")
    model = Classifier()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    bs = 128
    steps_per_epoch = (len(tx) + bs - 1) // bs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=args.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(tx), generator=gen)
        total = 0.0
        for i in range(steps_per_epoch):
            idx = perm[i * bs:(i + 1) * bs]
            logits, _ = model(augment(tx[idx], gen))
            loss = F.cross_entropy(logits, ty[idx], label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        model.eval()
        with torch.no_grad():
            acc = (model(vx)[0].argmax(1) == vy).float().mean().item()
        say(f"epoch {epoch + 1} loss {total / len(tx):.4f} held-out accuracy {acc:.4f} ({time.time() - t0:.0f}s)")

    model.eval()
    with torch.no_grad():
        acc = (model(vx)[0].argmax(1) == vy).float().mean().item()
    onnx_path = os.path.join(args.out, "model.onnx")
    torch.onnx.export(model, torch.zeros(1, 1, 28, 28), onnx_path, input_names=["image"],
                      output_names=["logits", "features"], opset_version=17,
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}, "features": {0: "batch"}})
    info = {"heldOutAccuracy": acc, "heldOut": len(vx), "train": len(tx), "epochs": args.epochs,
            "seed": args.seed, "seconds": round(time.time() - t0), "torch": torch.__version__,
            "parameters": sum(p.numel() for p in model.parameters())}
    with open(os.path.join(args.out, "training.json"), "w") as f:
        json.dump(info, f, indent=2)
    os.makedirs(mnist_data.CACHE_DIR, exist_ok=True)
    torch.save(model.state_dict(), os.path.join(mnist_data.CACHE_DIR, "classifier.pt"))
    say(json.dumps(info))


if __name__ == "__main__":
    main()
