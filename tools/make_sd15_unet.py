"""Generate a pipeline folder whose UNet has Stable Diffusion 1.5's topology at reduced width (random weights).

Usage: /usr/bin/python3 tools/make_sd15_unet.py [--out test/fixtures/sd15] [--channels 16,32,64,64] [--size 32]

The UNet follows diffusers' UNet2DConditionModel as configured for SD 1.5: conv_in; sinusoidal time projection +
TimestepEmbedding (linear, SiLU, linear; 4x width); down blocks CrossAttnDownBlock2D x3 + DownBlock2D (2 resnets
each, Transformer2DModel after each resnet of the cross-attention blocks, stride-2 conv downsamplers); mid block
UNetMidBlock2DCrossAttn (resnet, transformer, resnet); up blocks UpBlock2D + CrossAttnUpBlock2D x3 (3 resnets each
with skip concats, nearest-neighbour upsample + conv); GroupNorm, SiLU, conv_out. Resnets: GroupNorm, SiLU, 3x3
conv, time embedding projected and added, GroupNorm, SiLU, 3x3 conv, 1x1 conv shortcut where channels change.
Transformers: GroupNorm, 1x1 proj_in, BasicTransformerBlock (LayerNorm + self-attention, LayerNorm +
cross-attention to the text context, LayerNorm + GEGLU feed-forward), 1x1 proj_out, residual.

Differences from SD 1.5: width (block_out_channels --channels instead of 320,640,1280,1280), heads (channels / 32,
at least 1, instead of 8), GroupNorm groups (8 instead of 32), latent size (--size), context width (--context, 77
tokens). The text context is a fixed random "prompt embedding" stored in the graph (the pipeline has no text
encoder and DQ Studio's sampler feeds no text), so the unet's inputs are sample and timestep, like an
unconditional pipeline; the cross-attention layers still run on it every step.

Writes model_index.json, scheduler/scheduler_config.json and unet/model.onnx (opset 17, dynamic batch).
"""
import argparse
import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

GROUPS = 8


def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)  # flip_sin_to_cos=True


class Resnet(nn.Module):
    def __init__(self, cin, cout, temb):
        super().__init__()
        self.norm1 = nn.GroupNorm(GROUPS, cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(GROUPS, cout, eps=1e-5)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.conv_shortcut(x) if self.conv_shortcut is not None else x) + h


class Attention(nn.Module):
    def __init__(self, dim, ctx_dim, heads):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(ctx_dim, dim, bias=False)
        self.to_v = nn.Linear(ctx_dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x, ctx):
        b, n, d = x.shape
        h = self.heads
        q = self.to_q(x).reshape(b, n, h, d // h).transpose(1, 2)
        k = self.to_k(ctx).reshape(ctx.shape[0], ctx.shape[1], h, d // h).transpose(1, 2)
        v = self.to_v(ctx).reshape(ctx.shape[0], ctx.shape[1], h, d // h).transpose(1, 2)
        w = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(d // h)), dim=-1)
        return self.to_out(torch.matmul(w, v).transpose(1, 2).reshape(b, n, d))


class GEGLU(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x):
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate)


class Transformer2D(nn.Module):
    def __init__(self, ch, ctx_dim):
        super().__init__()
        heads = max(1, ch // 32)
        self.norm = nn.GroupNorm(GROUPS, ch, eps=1e-6)
        self.proj_in = nn.Conv2d(ch, ch, 1)
        self.norm1 = nn.LayerNorm(ch)
        self.attn1 = Attention(ch, ch, heads)
        self.norm2 = nn.LayerNorm(ch)
        self.attn2 = Attention(ch, ctx_dim, heads)
        self.norm3 = nn.LayerNorm(ch)
        self.ff_in = GEGLU(ch, 4 * ch)
        self.ff_out = nn.Linear(4 * ch, ch)
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x, ctx):
        b, c, hh, ww = x.shape
        h = self.proj_in(self.norm(x)).reshape(b, c, hh * ww).transpose(1, 2)
        n1 = self.norm1(h)
        h = h + self.attn1(n1, n1)
        h = h + self.attn2(self.norm2(h), ctx)
        h = h + self.ff_out(self.ff_in(self.norm3(h)))
        return x + self.proj_out(h.transpose(1, 2).reshape(b, c, hh, ww))


class UNet(nn.Module):
    def __init__(self, chs, ctx_dim, tokens=77):
        super().__init__()
        c0 = chs[0]
        temb = 4 * c0
        self.c0 = c0
        self.context = nn.Parameter(torch.randn(1, tokens, ctx_dim))
        self.linear_1 = nn.Linear(c0, temb)
        self.linear_2 = nn.Linear(temb, temb)
        self.conv_in = nn.Conv2d(4, c0, 3, padding=1)
        self.down = nn.ModuleList()
        skips = [c0]
        cin = c0
        for i, c in enumerate(chs):
            blk = nn.Module()
            blk.resnets = nn.ModuleList([Resnet(cin if j == 0 else c, c, temb) for j in range(2)])
            blk.attentions = nn.ModuleList([Transformer2D(c, ctx_dim) for _ in range(2)]) if i < 3 else None
            blk.downsampler = nn.Conv2d(c, c, 3, stride=2, padding=1) if i < len(chs) - 1 else None
            self.down.append(blk)
            skips += [c, c] + ([c] if blk.downsampler is not None else [])
            cin = c
        self.mid_res1 = Resnet(chs[-1], chs[-1], temb)
        self.mid_attn = Transformer2D(chs[-1], ctx_dim)
        self.mid_res2 = Resnet(chs[-1], chs[-1], temb)
        self.up = nn.ModuleList()
        rev = list(reversed(chs))
        prev = chs[-1]
        for i, c in enumerate(rev):
            blk = nn.Module()
            res = []
            for j in range(3):
                skip = skips.pop()
                res.append(Resnet((prev if j == 0 else c) + skip, c, temb))
            blk.resnets = nn.ModuleList(res)
            blk.attentions = nn.ModuleList([Transformer2D(c, ctx_dim) for _ in range(3)]) if i > 0 else None
            blk.upsampler = nn.Conv2d(c, c, 3, padding=1) if i < len(chs) - 1 else None
            self.up.append(blk)
            prev = c
        self.norm_out = nn.GroupNorm(GROUPS, c0)
        self.conv_out = nn.Conv2d(c0, 4, 3, padding=1)

    def forward(self, sample, timestep):
        ctx = self.context
        temb = self.linear_2(F.silu(self.linear_1(timestep_embedding(timestep, self.c0))))
        h = self.conv_in(sample)
        skips = [h]
        for blk in self.down:
            for j, r in enumerate(blk.resnets):
                h = r(h, temb)
                if blk.attentions is not None:
                    h = blk.attentions[j](h, ctx)
                skips.append(h)
            if blk.downsampler is not None:
                h = blk.downsampler(h)
                skips.append(h)
        h = self.mid_res2(self.mid_attn(self.mid_res1(h, temb), ctx), temb)
        for blk in self.up:
            for j, r in enumerate(blk.resnets):
                h = r(torch.cat([h, skips.pop()], 1), temb)
                if blk.attentions is not None:
                    h = blk.attentions[j](h, ctx)
            if blk.upsampler is not None:
                h = blk.upsampler(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "test", "fixtures", "sd15"))
    ap.add_argument("--channels", default="16,32,64,64")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--context", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    chs = [int(c) for c in args.channels.split(",")]
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    model = UNet(chs, args.context).eval()
    params = sum(p.numel() for p in model.parameters())
    os.makedirs(os.path.join(args.out, "unet"), exist_ok=True)
    os.makedirs(os.path.join(args.out, "scheduler"), exist_ok=True)
    x = torch.randn(2, 4, args.size, args.size)
    t = torch.tensor([10.0, 500.0])
    with torch.no_grad():
        torch.onnx.export(model, (x, t), os.path.join(args.out, "unet", "model.onnx"), input_names=["sample", "timestep"],
                          output_names=["out_sample"], opset_version=17,
                          dynamic_axes={"sample": {0: "batch"}, "timestep": {0: "batch"}, "out_sample": {0: "batch"}})
    index = {
        "_class_name": "DQStableDiffusionTopologyPipeline",
        "_dq_version": 1,
        "unet": ["diffusers", "UNet2DConditionModel"],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "default_guidance": 1.0,
        "_generated_by": "tools/make_sd15_unet.py --channels %s --size %d --context %d --seed %d (random weights, %d parameters)"
        % (args.channels, args.size, args.context, args.seed, params),
    }
    with open(os.path.join(args.out, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2)
    sched = {
        "_class_name": "DDIMScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "prediction_type": "epsilon", "clip_sample": False, "clip_sample_range": 1.0,
        "set_alpha_to_one": False, "steps_offset": 1, "timestep_spacing": "leading",
    }
    with open(os.path.join(args.out, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump(sched, f, indent=2)
    print("parameters", params, "unet bytes", os.path.getsize(os.path.join(args.out, "unet", "model.onnx")))


if __name__ == "__main__":
    main()
