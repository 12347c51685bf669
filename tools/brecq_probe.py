#!/usr/bin/env python3
"""Block reconstruction probe (BRECQ with AdaRound rounding) for tiny-t2i's 4-bit weights: a measurement, not a
product path. It asks whether learned rounding fitted block by block (Li et al. 2021, as Q-Diffusion uses it for
Stable Diffusion) does better than GPTQ's layer-by-layer rounding on our embedded text-to-image model.

    python3 tools/brecq_probe.py <variant> <out> [--iters 2000] [--samples 64]

<variant> is a tiny-t2i variant written by `dq quantize` with 4-bit grouped weights (e.g. tfmq-gptq-g32-w4a8). Its
4-bit layers are found from their values (groups of 32 along the input, each group's values on 16 levels of one
scale: max |w| / 7, or / 8 where -8 is used); the probe keeps those scales and learns, per weight, whether to round
down or up (AdaRound's rectified sigmoid, its regularizer annealed from beta 20 to 2 after 20% of the iterations,
lambda 0.01, Adam 1e-3), block by block in the order the UNet runs them (resnets, transformer blocks, resamplers):
each block's inputs come from the model quantized so far, its target is the FP block's output on FP inputs. Layers
in other formats (int8, FP, cached) keep the variant's values. The data: the FP sampler's inputs to the UNet over
the calibration prompts (DDIM 25 steps, guidance 3, both CFG halves; every --stride-th of them). <out> is a copy of <variant> with the
reconstructed 4-bit weights written into unet/model.onnx (the graph, its activation quantizers and caches as they
were). Per block it prints the block's output error against the FP block's output, on the same inputs: with the
relaxed weights it starts from ("soft start": FP's own weights with --init fp), rounded to nearest from there, with
the variant's weights, and reconstructed; then the whole UNet's. docs/quantize.md ("Evaluation on tiny-t2i") has
what it measured. Needs PyTorch and onnx.
"""
import argparse
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402

import train_tiny_t2i as T2I  # noqa: E402
from onnx_weights import load_onnx_weights  # noqa: E402

BASE = os.path.join(T2I.ROOT, "models", "tiny-t2i")
GROUP = 32
ZETA, GAMMA = 1.1, -0.1


def load_models():
    text = T2I.Text(os.path.join(BASE, "tokenizer"))
    te = T2I.CLIPTextModel(text.vocab_size, text.eos)
    load_onnx_weights(te, lambda: te(torch.ones(2, T2I.MAX_LEN, dtype=torch.int64)), os.path.join(BASE, "text_encoder", "model.onnx"))
    names = {}
    unet = T2I.UNet2DConditionModel(T2I.TEXT["hidden_size"])
    load_onnx_weights(unet, lambda: unet(torch.randn(2, 4, 8, 8), torch.tensor(5.0), torch.randn(2, T2I.MAX_LEN, 64)),
                      os.path.join(BASE, "unet", "model.onnx"), sources=names)
    for p in list(te.parameters()) + list(unet.parameters()):
        p.requires_grad_(False)
    return text, te.eval(), unet.eval(), names


class _Identity:
    """Stands in for the VAE: ddim_sample decodes the final latents, which the probe does not need."""

    @staticmethod
    def decode(z):
        return z


@torch.no_grad()
def calibration_inputs(unet, te, text, prompts, steps=25, guidance=3.0, seed=4321):
    """The UNet's inputs along the FP sampler's trajectories (train_tiny_t2i.ddim_sample, both CFG halves):
    x [N,4,8,8], t [N], ctx [N,77,64]."""
    xs, ts, cs = [], [], []

    def recording(x, t, ctx):
        xs.append(x)
        ts.append(t.reshape(-1).expand(len(x)))
        cs.append(ctx)
        return unet(x, t, ctx)

    T2I.ddim_sample(recording, te, _Identity, text, prompts, seed, 1.0, steps=steps, guidance=guidance)
    return torch.cat(xs), torch.cat(ts), torch.cat(cs)


def run_over(model, data, batch=256):
    """model's outputs over data, in batches."""
    x, t, c = data
    with torch.no_grad():
        return [model(x[i:i + batch], t[i:i + batch], c[i:i + batch]) for i in range(0, len(x), batch)]


def group_view(w):
    """[O, C, kh, kw] or [O, C] -> [O, kh*kw, C] (GPTQ's column order: kernel position, then channel)."""
    if w.ndim == 4:
        return w.permute(0, 2, 3, 1).reshape(w.shape[0], -1, w.shape[1])
    return w.reshape(w.shape[0], 1, w.shape[1])


def ungroup(v, shape):
    if len(shape) == 4:
        o, c, kh, kw = shape
        return v.reshape(o, kh, kw, c).permute(0, 3, 1, 2).contiguous()
    return v.reshape(shape)


def four_bit_scales(w):
    """Per-element scales if w's values are 4-bit groups of 32 along the input, else None."""
    v = group_view(w)
    O, P, C = v.shape
    if C % GROUP:
        return None
    g = v.reshape(O, P, C // GROUP, GROUP).double()
    amax = g.abs().amax(-1, keepdim=True)
    scale = torch.zeros_like(amax)  # 0 for an all-zero group
    found = amax == 0
    for top in (7.0, 8.0):
        s = amax / top
        q = g / torch.where(s > 0, s, torch.ones_like(s))
        r = q.round()
        fits = ((q - r).abs() < 1e-3).all(-1, keepdim=True) & (r >= -8).all(-1, keepdim=True) & (r <= 7).all(-1, keepdim=True)
        scale = torch.where(~found & fits, s, scale)
        found |= fits
    if not found.all():
        return None
    return ungroup(scale.expand_as(g).reshape(O, P, C).float(), w.shape)


class AdaRound(nn.Module):
    """A Conv2d or Linear whose weight is s * clamp(floor(W / s) + h(V), -8, 7) (the variant's scales s)."""

    def __init__(self, layer, w_fp, s, init):
        super().__init__()
        self.layer = layer
        self.register_buffer("variant", layer.weight.detach().clone())  # the variant's own values, to compare against
        safe = torch.where(s > 0, s, torch.ones_like(s))
        self.register_buffer("s", s)
        self.register_buffer("base", torch.floor(w_fp / safe))
        if init == "variant":  # the variant's rounding, where it lies between the two grid points around W
            rest = (self.variant / safe - self.base).clamp(0.1, 0.9)
        else:  # FP's fractions: the relaxed weight starts at W
            rest = (w_fp / safe - self.base).clamp(0.01, 0.99)
        self.V = nn.Parameter(-torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1))
        self.mode = "soft"  # soft (h(V)), hard (V >= 0) or variant

    def h(self):
        return (torch.sigmoid(self.V) * (ZETA - GAMMA) + GAMMA).clamp(0, 1)

    def weight(self):
        if self.mode == "variant":
            return self.variant
        up = (self.V >= 0).float() if self.mode == "hard" else self.h()
        return self.s * (self.base + up).clamp(-8, 7)

    def reg(self, beta):
        return (1 - (2 * self.h() - 1).abs().pow(beta)).sum()

    def forward(self, x):
        w = self.weight()
        if isinstance(self.layer, nn.Conv2d):
            return F.conv2d(x, w, self.layer.bias, self.layer.stride, self.layer.padding)
        return F.linear(x, w, self.layer.bias)


def set_mode(layers, mode):
    for a in layers:
        a.mode = mode


def blocks_of(unet):
    out = []
    for i, b in enumerate(unet.down_blocks):
        for j in range(len(b.resnets)):
            out += [(f"down{i}.res{j}", b.resnets[j]), (f"down{i}.att{j}", b.attentions[j])]
        if b.sampler_name:
            out.append((f"down{i}.down", b.downsamplers[0]))
    m = unet.mid_block
    out += [("mid.res0", m.resnets[0]), ("mid.att0", m.attentions[0]), ("mid.res1", m.resnets[1])]
    for i, b in enumerate(unet.up_blocks):
        for j in range(len(b.resnets)):
            out += [(f"up{i}.res{j}", b.resnets[j]), (f"up{i}.att{j}", b.attentions[j])]
        if b.sampler_name:
            out.append((f"up{i}.up", b.upsamplers[0]))
    return out


def capture(model, block, data, batch=256):
    """Runs model over data; returns block's positional inputs for every sample."""
    got = []
    hook = block.register_forward_pre_hook(lambda m, a: got.append(tuple(z.detach() for z in a)))
    run_over(model, data, batch)
    hook.remove()
    return tuple(torch.cat([g[k] for g in got]) for k in range(len(got[0])))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variant")
    ap.add_argument("out")
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--samples", type=int, default=64, help="calibration prompts (x 25 steps x 2 CFG halves)")
    ap.add_argument("--stride", type=int, default=2, help="keep every n-th calibration input")
    ap.add_argument("--init", choices=["fp", "variant"], default="fp", help="AdaRound's start: FP's fractions, or the variant's rounding")
    ap.add_argument("--lam", type=float, default=0.01)
    args = ap.parse_args()
    vpath = os.path.join(args.variant, "unet", "model.onnx")
    if not os.path.isfile(vpath):
        sys.exit(f"brecq_probe: no variant denoiser at {vpath} (give a folder written by dq quantize from models/tiny-t2i)")
    torch.manual_seed(0)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    text, te, fp, names = load_models()
    qm = T2I.UNet2DConditionModel(T2I.TEXT["hidden_size"])
    qm.load_state_dict(fp.state_dict())
    for p in qm.parameters():
        p.requires_grad_(False)
    qm.eval()
    vm = onnx.load(vpath)
    vinit = {t.name: t for t in vm.graph.initializer}
    # the variant's values for every layer it stores; 4-bit layers become AdaRound modules
    state = qm.state_dict()
    four = {}
    for key, (name, kind) in names.items():
        if name not in vinit:
            continue
        a = torch.from_numpy(numpy_helper.to_array(vinit[name]).copy())
        a = a.t().contiguous() if kind == "matmul" else a.reshape(state[key].shape)
        state[key] = a
        if key.endswith(".weight") and a.ndim in (2, 4):
            s = four_bit_scales(a)
            if s is not None:
                four[key[: -len(".weight")]] = s
    qm.load_state_dict(state)
    fp_state = fp.state_dict()
    mods = dict(qm.named_modules())
    ada = {}
    for path, s in four.items():
        parent, _, leaf = path.rpartition(".")
        layer = mods[path]
        a = AdaRound(layer, fp_state[path + ".weight"], s, args.init)
        setattr(mods[parent], leaf, a)
        ada[path] = a
    if not ada:
        sys.exit(f"brecq_probe: {args.variant} has no 4-bit layers in groups of {GROUP} (nothing to reconstruct)")
    print(f"4-bit layers: {len(ada)}; other stored layers keep the variant's values", flush=True)
    prompts = [p.strip() for p in open(os.path.join(BASE, "calibration_prompts.txt")) if p.strip()][: args.samples]
    t0 = time.time()
    data = calibration_inputs(fp, te, text, prompts)
    print(f"calibration inputs: {len(data[0])} in {time.time() - t0:.1f} s", flush=True)
    if args.stride > 1:
        data = tuple(d[:: args.stride] for d in data)
    fp_blocks = dict(blocks_of(fp))
    targets = {}
    hooks = [b.register_forward_hook(lambda m, a, o, k=k: targets.setdefault(k, []).append(o.detach())) for k, b in fp_blocks.items()]
    fp_out = torch.cat(run_over(fp, data))
    for h in hooks:
        h.remove()
    targets = {k: torch.cat(v) for k, v in targets.items()}
    for name, block in blocks_of(qm):
        mine = [a for p, a in ada.items() if any(m is a for m in block.modules())]
        if not mine:
            continue
        t1 = time.time()
        target = targets[name]
        inputs = capture(qm, block, data)
        err = {}
        with torch.no_grad():
            for mode in ("soft", "hard", "variant"):
                set_mode(mine, mode)
                err[mode] = F.mse_loss(block(*inputs), target).item()
        set_mode(mine, "soft")
        for a in mine:
            a.V.requires_grad_(True)
        opt = torch.optim.Adam([a.V for a in mine], lr=1e-3)
        n = len(target)
        for it in range(args.iters):
            sel = torch.randint(0, n, (args.batch,))
            out = block(*(z[sel] for z in inputs))
            rec = F.mse_loss(out, target[sel], reduction="none").flatten(1).sum(1).mean()
            frac = it / args.iters
            if frac < 0.2:
                loss = rec
            else:
                beta = 20 + (2 - 20) * (frac - 0.2) / 0.8
                loss = rec + args.lam * sum(a.reg(beta) for a in mine)
            opt.zero_grad()
            loss.backward()
            opt.step()
        for a in mine:
            a.V.requires_grad_(False)
        set_mode(mine, "hard")
        with torch.no_grad():
            after = F.mse_loss(block(*inputs), target).item()
        print(f"{name}: {len(mine)} layers, block MSE: soft start {err['soft']:.3e}, nearest {err['hard']:.3e}, variant's {err['variant']:.3e} -> reconstructed {after:.3e} ({time.time() - t1:.0f} s)", flush=True)
    # the whole UNet's output error on the calibration inputs (weights only: no activation quantizers here)
    def unet_mse(mode):
        set_mode(ada.values(), mode)
        return F.mse_loss(torch.cat(run_over(qm, data)), fp_out).item()
    given, rec = unet_mse("variant"), unet_mse("hard")
    print(f"UNet output MSE against FP on the calibration inputs: the variant's 4-bit weights {given:.4e}, reconstructed {rec:.4e}", flush=True)
    # write the variant copy
    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    shutil.copytree(args.variant, args.out)
    for path, a in ada.items():
        name, kind = names[path + ".weight"]
        w = a.weight().detach()
        w = w.t().contiguous() if kind == "matmul" else w
        t = vinit[name]
        t.CopyFrom(numpy_helper.from_array(w.numpy().astype(np.float32).reshape(tuple(t.dims)), name))
    onnx.save(vm, os.path.join(args.out, "unet", "model.onnx"))
    print(f"-> {args.out} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
