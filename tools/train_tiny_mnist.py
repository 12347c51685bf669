"""Train the embedded class-conditional diffusion model (tiny-mnist) and export it in the diffusers ONNX layout.

Usage:
  /usr/bin/python3 tools/train_tiny_mnist.py --steps 8000 [--out models/tiny-mnist] [--seed 0]
  /usr/bin/python3 tools/train_tiny_mnist.py --export-only .train-cache/tiny-mnist-8000.pt

Network (what diffusion PTQ targets): sinusoidal timestep embedding + MLP; a class embedding (index 10 is the
null class for classifier-free guidance) added to it; a time projection (scale-shift) in every residual block;
GroupNorm + SiLU; encoder features concatenated into the decoder blocks; one self-attention block.
ONNX inputs: sample [B,1,28,28] float32, timestep [B] float32, class_labels [B] int64; output out_sample.

Training: epsilon prediction, linear betas 1e-4..0.02 over 1000 steps, AdamW, warmup + cosine decay, EMA,
min-SNR-5 loss weighting, 10% null-class dropout. Seeded; logged to <out>/train-log.txt.
"""
import argparse
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import mnist_data

T = 1000
NULL_CLASS = 10


def sinusoidal(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, emb_dim):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_proj = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(8, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.time_proj(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.shortcut(x) + h


class Attention(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.norm = nn.GroupNorm(8, ch)
        self.q = nn.Linear(ch, ch)
        self.k = nn.Linear(ch, ch)
        self.v = nn.Linear(ch, ch)
        self.out = nn.Linear(ch, ch)

    def forward(self, x):
        b, c, hgt, wid = x.shape
        h = self.norm(x).reshape(b, c, hgt * wid).transpose(1, 2)
        q, k, v = self.q(h), self.k(h), self.v(h)
        w = torch.softmax(torch.matmul(q, k.transpose(1, 2)) * (c ** -0.5), dim=-1)
        h = self.out(torch.matmul(w, v)).transpose(1, 2).reshape(b, c, hgt, wid)
        return x + h


class TinyUNet(nn.Module):
    def __init__(self, ch=32, emb_dim=128):
        super().__init__()
        self.ch = ch
        self.time_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(NULL_CLASS + 1, emb_dim)
        self.conv_in = nn.Conv2d(1, ch, 3, padding=1)
        self.down0 = ResBlock(ch, ch, emb_dim)                   # 28x28
        self.pool0 = nn.Conv2d(ch, ch, 3, stride=2, padding=1)    # -> 14x14
        self.down1 = ResBlock(ch, 2 * ch, emb_dim)
        self.pool1 = nn.Conv2d(2 * ch, 2 * ch, 3, stride=2, padding=1)  # -> 7x7
        self.mid1 = ResBlock(2 * ch, 2 * ch, emb_dim)
        self.attn = Attention(2 * ch)
        self.mid2 = ResBlock(2 * ch, 2 * ch, emb_dim)
        self.up1_conv = nn.Conv2d(2 * ch, 2 * ch, 3, padding=1)
        self.up1 = ResBlock(4 * ch, 2 * ch, emb_dim)              # concat with down1's output
        self.up0_conv = nn.Conv2d(2 * ch, 2 * ch, 3, padding=1)
        self.up0 = ResBlock(3 * ch, ch, emb_dim)                  # concat with down0's output
        self.norm_out = nn.GroupNorm(8, ch)
        self.conv_out = nn.Conv2d(ch, 1, 3, padding=1)

    def forward(self, sample, timestep, class_labels):
        emb = self.time_mlp(sinusoidal(timestep, self.ch)) + self.class_emb(class_labels)
        h = self.conv_in(sample)
        s0 = self.down0(h, emb)
        s1 = self.down1(self.pool0(s0), emb)
        h = self.mid1(self.pool1(s1), emb)
        h = self.mid2(self.attn(h), emb)
        h = self.up1_conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.up1(torch.cat([h, s1], dim=1), emb)
        h = self.up0_conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.up0(torch.cat([h, s0], dim=1), emb)
        return self.conv_out(F.silu(self.norm_out(h)))


def schedule():
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0)


@torch.no_grad()
def ddim_sample(model, classes, seed, steps=25, guidance=2.0):
    """Reference DDIM (eta 0, leading spacing with steps_offset 1, clip x0 to [-1, 1]) with classifier-free guidance."""
    ac = schedule()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(classes), 1, 28, 28, generator=g, dtype=torch.float64)
    ratio = T // steps
    ts = (np.arange(0, steps) * ratio)[::-1] + 1
    null = torch.full_like(classes, NULL_CLASS)
    for t in ts:
        tt = torch.full((len(classes),), float(t))
        eps = model(torch.cat([x, x]).float(), torch.cat([tt, tt]), torch.cat([classes, null])).double()
        cond, unc = eps.chunk(2)
        eps = unc + guidance * (cond - unc)
        a_t = ac[t]
        a_prev = ac[t - ratio] if t - ratio >= 0 else ac[0] * 0 + 1.0
        x0 = ((x - (1 - a_t).sqrt() * eps) / a_t.sqrt()).clamp(-1, 1)
        eps = (x - a_t.sqrt() * x0) / (1 - a_t).sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return x.float()


def agreement(model, classifier, n=200, guidance=2.0, steps=25):
    classes = torch.arange(n) % 10
    imgs = ddim_sample(model, classes, seed=1234, steps=steps, guidance=guidance)
    logits, _ = classifier(((imgs + 1) / 2).clamp(0, 1))
    return (logits.argmax(1) == classes).float().mean().item()


def load_classifier():
    from train_classifier import Classifier
    c = Classifier()
    c.load_state_dict(torch.load(os.path.join(mnist_data.CACHE_DIR, "classifier.pt")))
    return c.eval()


def export(model, out, meta):
    os.makedirs(os.path.join(out, "unet"), exist_ok=True)
    os.makedirs(os.path.join(out, "scheduler"), exist_ok=True)
    model.eval()
    b = 2
    torch.onnx.export(
        model, (torch.zeros(b, 1, 28, 28), torch.full((b,), 500.0), torch.zeros(b, dtype=torch.int64)),
        os.path.join(out, "unet", "model.onnx"), input_names=["sample", "timestep", "class_labels"],
        output_names=["out_sample"], opset_version=17,
        dynamic_axes={"sample": {0: "batch"}, "timestep": {0: "batch"}, "class_labels": {0: "batch"},
                      "out_sample": {0: "batch"}})
    with open(os.path.join(out, "unet", "config.json"), "w") as f:
        json.dump({"sample_size": 28, "in_channels": 1, "out_channels": 1, "num_class_embeds": NULL_CLASS + 1,
                   "null_class": NULL_CLASS, "block_out_channels": [model.ch, 2 * model.ch],
                   "time_embedding_norm": "scale_shift"}, f, indent=2)
    with open(os.path.join(out, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump({"_class_name": "DDIMScheduler", "num_train_timesteps": T, "beta_start": 0.0001,
                   "beta_end": 0.02, "beta_schedule": "linear", "prediction_type": "epsilon",
                   "clip_sample": False, "clip_sample_range": 1.0, "set_alpha_to_one": True,
                   "steps_offset": 1, "timestep_spacing": "leading"}, f, indent=2)
    with open(os.path.join(out, "model_index.json"), "w") as f:
        json.dump({"_class_name": "DQClassConditionalPipeline", "_dq_version": 1,
                   "unet": ["diffusers", "UNet2DModel"], "scheduler": ["diffusers", "DDIMScheduler"],
                   "classes": [str(i) for i in range(10)], "null_class": NULL_CLASS,
                   "default_guidance": meta.get("guidance", 2.0)}, f, indent=2)
    with open(os.path.join(out, "training.json"), "w") as f:
        json.dump(meta, f, indent=2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "models", "tiny-mnist"))
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=2000)
    ap.add_argument("--export-only", default=None, help="checkpoint to export without training")
    ap.add_argument("--guidance", type=float, default=2.0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    os.makedirs(mnist_data.CACHE_DIR, exist_ok=True)

    if args.export_only:
        ck = torch.load(args.export_only)
        model = TinyUNet()
        model.load_state_dict(ck["ema"])
        export(model, args.out, ck["meta"])
        return

    os.makedirs(args.out, exist_ok=True)
    log = open(os.path.join(args.out, "train-log.txt"), "a")

    def say(msg):
        print(msg, flush=True)
        log.write(msg + "\n")
        log.flush()

    tx, ty, _, _ = mnist_data.load()
    tx = torch.from_numpy(tx) * 2 - 1
    ty = torch.from_numpy(ty)
    model = TinyUNet()
    ema = TinyUNet()
    ema.load_state_dict(model.state_dict())
    for p in ema.parameters():
        p.requires_grad_(False)
    nparams = sum(p.numel() for p in model.parameters())
    say(f"start: {vars(args)} params {nparams} train images {len(tx)} torch {torch.__version__}")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    warm = 200

    def lr_at(step):
        if step < warm:
            return args.lr * (step + 1) / warm
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (step - warm) / (args.steps - warm))))

    ac = schedule().float()
    snr = ac / (1 - ac)
    weight = torch.clamp(snr, max=5.0) / snr  # min-SNR-5 for epsilon prediction
    gen = torch.Generator().manual_seed(args.seed)
    classifier = None
    t0 = time.time()
    run = 0.0
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        idx = torch.randint(0, len(tx), (args.batch,), generator=gen)
        x0, y = tx[idx], ty[idx].clone()
        y[torch.rand(args.batch, generator=gen) < 0.1] = NULL_CLASS
        t = torch.randint(0, T, (args.batch,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = ac[t][:, None, None, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        pred = model(xt, t.float(), y)
        loss = ((pred - noise) ** 2).mean(dim=(1, 2, 3))
        loss = (loss * weight[t]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(decay).add_(pm, alpha=1 - decay)
        run = 0.98 * run + 0.02 * loss.item() if step else loss.item()
        if (step + 1) % 100 == 0:
            el = time.time() - t0
            say(f"step {step + 1} loss {run:.4f} lr {lr_at(step):.2e} {el:.0f}s ({el / (step + 1):.3f} s/step)")
        last = step + 1 == args.steps
        if (step + 1) % args.eval_every == 0 or last:
            meta = {"steps": step + 1, "batch": args.batch, "lr": args.lr, "ema": args.ema, "seed": args.seed,
                    "parameters": nparams, "loss_ema": round(run, 5), "seconds": round(time.time() - t0),
                    "torch": torch.__version__, "guidance": args.guidance}
            ck = os.path.join(mnist_data.CACHE_DIR, f"tiny-mnist-{step + 1}.pt")
            torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "meta": meta}, ck)
            if os.path.exists(os.path.join(mnist_data.CACHE_DIR, "classifier.pt")):
                classifier = classifier or load_classifier()
                ema.eval()
                res = {g: agreement(ema, classifier, n=100, guidance=g) for g in (1.0, 2.0, 3.0)}
                meta["agreement_python_ddim25_n100"] = res
                say(f"eval at step {step + 1}: class agreement by guidance {res}")
            if last:
                export(ema, args.out, meta)
                say(f"exported to {args.out}")


if __name__ == "__main__":
    main()
