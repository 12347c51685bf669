"""Generate small random-weight ONNX graphs with the topologies the graph toolkit must understand.

Usage: /usr/bin/python3 tools/make_test_graphs.py [--out test/fixtures/graphs]

- unet2d.onnx: like diffusers' UNet2DModel: time embedding (sinusoidal + MLP) projected and ADDED to the hidden
  states in every resnet block ("default" time_embedding_norm), skip concats in the up path, mid attention,
  unconditional (inputs: sample, timestep).
- unet2d_condition.onnx: like UNet2DConditionModel: as above plus cross-attention to encoder_hidden_states
  [B, 8, 32] (inputs: sample, timestep, encoder_hidden_states); timestep is int64 and called "timestep".
- dit.onnx: like DiT: patchify conv, transformer blocks with adaLN-Zero modulation (SiLU -> Linear -> 6 chunks
  scaling/shifting LayerNorm outputs and gating residuals), final adaLN layer, unpatchify; timestep input named
  "t", class label input "y".
Random weights (seeded); small widths. The expected analysis is asserted in test/integration/onnx/.
"""
import argparse
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F


def sinusoidal(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class Resnet(nn.Module):
    """diffusers ResnetBlock2D with time_embedding_norm='default': temb projected and added."""

    def __init__(self, cin, cout, temb):
        super().__init__()
        self.norm1 = nn.GroupNorm(4, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(4, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.conv_shortcut(x) if self.conv_shortcut is not None else x) + h


class Attn(nn.Module):
    def __init__(self, dim, ctx=None, heads=2):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(ctx or dim, dim, bias=False)
        self.to_v = nn.Linear(ctx or dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x, ctx=None):
        ctx = x if ctx is None else ctx
        b, n, d = x.shape
        h = self.heads
        q = self.to_q(x).reshape(b, n, h, d // h).transpose(1, 2)
        k = self.to_k(ctx).reshape(b, ctx.shape[1], h, d // h).transpose(1, 2)
        v = self.to_v(ctx).reshape(b, ctx.shape[1], h, d // h).transpose(1, 2)
        w = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d // h), dim=-1)
        o = torch.matmul(w, v).transpose(1, 2).reshape(b, n, d)
        return self.to_out(o)


class Transformer2D(nn.Module):
    def __init__(self, ch, ctx=None):
        super().__init__()
        self.norm = nn.GroupNorm(4, ch)
        self.proj_in = nn.Conv2d(ch, ch, 1)
        self.norm1 = nn.LayerNorm(ch)
        self.attn1 = Attn(ch)
        self.ctx = ctx
        if ctx:
            self.norm2 = nn.LayerNorm(ch)
            self.attn2 = Attn(ch, ctx)
        self.norm3 = nn.LayerNorm(ch)
        self.ff1 = nn.Linear(ch, 2 * ch)
        self.ff2 = nn.Linear(2 * ch, ch)
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x, enc=None):
        b, c, hh, ww = x.shape
        h = self.proj_in(self.norm(x)).reshape(b, c, hh * ww).transpose(1, 2)
        h = h + self.attn1(self.norm1(h))
        if self.ctx:
            h = h + self.attn2(self.norm2(h), enc)
        h = h + self.ff2(F.gelu(self.ff1(self.norm3(h))))
        return x + self.proj_out(h.transpose(1, 2).reshape(b, c, hh, ww))


class UNet(nn.Module):
    def __init__(self, ch=16, ctx=None):
        super().__init__()
        temb = 4 * ch
        self.ch = ch
        self.linear_1 = nn.Linear(ch, temb)
        self.linear_2 = nn.Linear(temb, temb)
        self.conv_in = nn.Conv2d(4, ch, 3, padding=1)
        self.down0 = Resnet(ch, ch, temb)
        self.down0_ds = nn.Conv2d(ch, ch, 3, stride=2, padding=1)
        self.down1 = Resnet(ch, 2 * ch, temb)
        self.attn_d1 = Transformer2D(2 * ch, ctx) if ctx else None
        self.down1_ds = nn.Conv2d(2 * ch, 2 * ch, 3, stride=2, padding=1)
        self.mid1 = Resnet(2 * ch, 2 * ch, temb)
        self.mid_attn = Transformer2D(2 * ch, ctx)
        self.mid2 = Resnet(2 * ch, 2 * ch, temb)
        self.up1a = Resnet(4 * ch, 2 * ch, temb)
        self.up1b = Resnet(3 * ch, 2 * ch, temb)
        self.up1_conv = nn.Conv2d(2 * ch, 2 * ch, 3, padding=1)
        self.up0a = Resnet(3 * ch, ch, temb)
        self.up0b = Resnet(2 * ch, ch, temb)
        self.norm_out = nn.GroupNorm(4, ch)
        self.conv_out = nn.Conv2d(ch, 4, 3, padding=1)

    def forward(self, sample, timestep, encoder_hidden_states=None):
        enc = encoder_hidden_states
        temb = self.linear_2(F.silu(self.linear_1(sinusoidal(timestep, self.ch))))
        h = self.conv_in(sample)
        s0 = h
        h = self.down0(h, temb)
        s1 = h
        h = self.down0_ds(h)
        s2 = h
        h = self.down1(h, temb)
        if self.attn_d1 is not None:
            h = self.attn_d1(h, enc)
        s3 = h
        h = self.down1_ds(h)
        h = self.mid2(self.mid_attn(self.mid1(h, temb), enc), temb)
        h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        h = self.up1a(torch.cat([h, s3], 1), temb)
        h = self.up1b(torch.cat([h, s2], 1), temb)
        h = self.up1_conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.up0a(torch.cat([h, s1], 1), temb)
        h = self.up0b(torch.cat([h, s0], 1), temb)
        return self.conv_out(F.silu(self.norm_out(h)))


def modulate(x, shift, scale):
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


class DiTBlock(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.norm1 = nn.LayerNorm(d, eps=1e-6)
        self.attn = Attn(d)
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))

    def forward(self, x, c):
        sh1, sc1, g1, sh2, sc2, g2 = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + g1[:, None, :] * self.attn(modulate(self.norm1(x), sh1, sc1))
        x = x + g2[:, None, :] * self.fc2(F.gelu(self.fc1(modulate(self.norm2(x), sh2, sc2))))
        return x


class DiT(nn.Module):
    def __init__(self, d=32, patch=2, size=8, depth=2, classes=10):
        super().__init__()
        self.d, self.p, self.size = d, patch, size
        self.x_embedder = nn.Conv2d(4, d, patch, stride=patch)
        self.pos = nn.Parameter(torch.randn(1, (size // patch) ** 2, d) * 0.02)
        self.t_mlp1 = nn.Linear(64, d)
        self.t_mlp2 = nn.Linear(d, d)
        self.y_embedder = nn.Embedding(classes + 1, d)
        self.blocks = nn.ModuleList([DiTBlock(d) for _ in range(depth)])
        self.norm_final = nn.LayerNorm(d, eps=1e-6)
        self.final_adaLN = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        self.final_linear = nn.Linear(d, patch * patch * 4)

    def forward(self, x, t, y):
        b = x.shape[0]
        h = self.x_embedder(x).flatten(2).transpose(1, 2) + self.pos
        c = self.t_mlp2(F.silu(self.t_mlp1(sinusoidal(t, 64)))) + self.y_embedder(y)
        for blk in self.blocks:
            h = blk(h, c)
        shift, scale = self.final_adaLN(c).chunk(2, dim=1)
        h = self.final_linear(modulate(self.norm_final(h), shift, scale))
        g = self.size // self.p
        h = h.reshape(b, g, g, self.p, self.p, 4).permute(0, 5, 1, 3, 2, 4).reshape(b, 4, self.size, self.size)
        return h


def export(model, args, names, path, dyn):
    model.eval()
    torch.onnx.export(model, args, path, input_names=names, output_names=["out_sample"], opset_version=17,
                      dynamic_axes={n: {0: "batch"} for n in dyn})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "test", "fixtures", "graphs"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    b = 2
    export(UNet(), (torch.randn(b, 4, 16, 16), torch.tensor([10.0, 500.0])), ["sample", "timestep"],
           os.path.join(args.out, "unet2d.onnx"), ["sample", "timestep"])
    export(UNet(ctx=24), (torch.randn(b, 4, 16, 16), torch.tensor([10, 500]), torch.randn(b, 8, 24)),
           ["sample", "timestep", "encoder_hidden_states"], os.path.join(args.out, "unet2d_condition.onnx"),
           ["sample", "timestep", "encoder_hidden_states"])
    export(DiT(), (torch.randn(b, 4, 8, 8), torch.tensor([10.0, 500.0]), torch.tensor([1, 10])), ["x", "t", "y"],
           os.path.join(args.out, "dit.onnx"), ["x", "t", "y"])
    for f in sorted(os.listdir(args.out)):
        print(f, os.path.getsize(os.path.join(args.out, f)))


if __name__ == "__main__":
    main()
