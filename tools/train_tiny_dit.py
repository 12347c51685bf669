"""Train and export tiny-dit: the studio's embedded DiT, an SD3-style MMDiT trained with flow matching.

  /usr/bin/python3 tools/train_tiny_dit.py --plan
  /usr/bin/python3 tools/train_tiny_dit.py --out models/tiny-dit              # needs .train-cache/tiny-t2i/unet-7000.pt
  /usr/bin/python3 tools/train_tiny_dit.py --export-only .train-cache/tiny-dit/dit-6000.pt --out models/tiny-dit
  /usr/bin/python3 tools/train_tiny_dit.py --eval-only .train-cache/tiny-dit/dit-6000.pt --eval-samples 500

It reuses tiny-t2i's frozen VAE and text encoder (the EMA weights of its training checkpoint, which are the weights
models/tiny-t2i holds) and the same data (tools/t2i_data.py); only the transformer is trained. The layout is the one
Optimum writes for a StableDiffusion3Pipeline, with one CLIP text encoder instead of three encoders (model_index.json
names text_encoder_2 and text_encoder_3 as [null, null]):

- text_encoder/: CLIPTextModelWithProjection (the tiny-t2i CLIP with an identity text_projection), outputs
  text_embeds, last_hidden_state and hidden_states.0..2, as Optimum exports it for SD3;
- tokenizer/: tiny-t2i's CLIP BPE with model_max_length 16 (every caption fits; the transformer's joint attention
  then runs over 16 text tokens instead of 77);
- transformer/: SD3Transformer2DModel's conventions: hidden_states [B, 4, h, w], encoder_hidden_states [B, 16, 64]
  (CLIP's hidden_states[-2], as SD3 takes it), pooled_projections [B, 64] (text_embeds), timestep [B] = sigma x 1000,
  out_hidden_states; patch 2, joint (MMDiT) blocks with AdaLayerNormZero, the last block context_pre_only, a 2-D
  sin-cos position embedding cropped from a 8x8-patch grid (so 8x8 .. 16x16 latents run);
- scheduler/: FlowMatchEulerDiscreteScheduler, shift 1.0, no dynamic shifting;
- model_index.json max_sequence_length 0: no T5 tokens (diffusers pads max_sequence_length zero tokens when
  text_encoder_3 is absent; DQ Studio reads this field, diffusers takes it as the pipeline argument).

Training: rectified flow as SD3 (x_t = (1 - s) x0 + s noise, the network predicts noise - x0, s logit-normal),
10% empty captions for classifier-free guidance, AdamW with warmup and cosine decay, gradient clipping 1.0, EMA 0.999.
"""
import argparse
import json
import math
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
import t2i_data  # noqa: E402
import train_tiny_t2i as t2i  # noqa: E402

ROOT = t2i.ROOT
CACHE = os.path.join(os.path.dirname(t2i.CACHE), "tiny-dit")
T2I_CKPT = os.path.join(t2i.CACHE, "unet-7000.pt")
TOKENS = 16
DIT = {"sample_size": 8, "patch_size": 2, "in_channels": 4, "num_layers": 4, "attention_head_dim": 32,
       "num_attention_heads": 3, "joint_attention_dim": 64, "caption_projection_dim": 96,
       "pooled_projection_dim": 64, "out_channels": 4, "pos_embed_max_size": 8}
SCHEDULER = {"_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": t2i.DIFFUSERS_VERSION,
             "base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 4096, "max_shift": 1.15,
             "num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": False}


# ------------------------------------------------------------------------------------------------------------------
# SD3Transformer2DModel in miniature (diffusers' module names, so the graph's node names read like a real export's)


def sincos_2d(dim, grid):
    """diffusers get_2d_sincos_pos_embed(dim, grid, base_size=grid, interpolation_scale=1): [grid*grid, dim]."""
    coords = np.arange(grid, dtype=np.float64) / (grid / grid)
    gw, gh = np.meshgrid(coords, coords)

    def one(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    emb = np.concatenate([one(dim // 2, gw), one(dim // 2, gh)], axis=1)
    return torch.from_numpy(emb).float()


class PatchEmbed(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["num_attention_heads"] * c["attention_head_dim"]
        self.p, self.max = c["patch_size"], c["pos_embed_max_size"]
        self.proj = nn.Conv2d(c["in_channels"], d, self.p, stride=self.p)
        self.register_buffer("pos_embed", sincos_2d(d, self.max).reshape(1, self.max, self.max, d), persistent=True)

    def forward(self, x):
        h, w = x.shape[-2] // self.p, x.shape[-1] // self.p
        top, left = (self.max - h) // 2, (self.max - w) // 2
        pos = self.pos_embed[:, top:top + h, left:left + w, :].reshape(1, -1, self.pos_embed.shape[-1])
        return self.proj(x).flatten(2).transpose(1, 2) + pos


class Mlp2(nn.Module):
    """TimestepEmbedding / PixArtAlphaTextProjection: linear_1, SiLU, linear_2."""

    def __init__(self, i, o):
        super().__init__()
        self.linear_1, self.linear_2 = nn.Linear(i, o), nn.Linear(o, o)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class TimeTextEmbed(nn.Module):
    def __init__(self, d, pooled):
        super().__init__()
        self.timestep_embedder = Mlp2(256, d)
        self.text_embedder = Mlp2(pooled, d)

    def forward(self, t, pooled):
        return self.timestep_embedder(t2i.timestep_embedding(t, 256)) + self.text_embedder(pooled)


class PlainLayerNorm(nn.Module):
    """LayerNorm(elementwise_affine=False), exported with constant ones and zeros (torch 1.13 would leave the ONNX
    LayerNormalization's scale input empty, which the checker refuses)."""

    def __init__(self, d):
        super().__init__()
        self.register_buffer("ones", torch.ones(d), persistent=False)
        self.register_buffer("zeros", torch.zeros(d), persistent=False)

    def forward(self, x):
        return F.layer_norm(x, self.ones.shape, self.ones, self.zeros, 1e-6)


class AdaZero(nn.Module):
    """AdaLayerNormZero: SiLU + linear -> shift, scale, gate (attention) and shift, scale, gate (MLP)."""

    def __init__(self, d):
        super().__init__()
        self.linear = nn.Linear(d, 6 * d)
        self.norm = PlainLayerNorm(d)

    def forward(self, x, emb):
        sh, sc, g, sh2, sc2, g2 = self.linear(F.silu(emb)).chunk(6, dim=1)
        return self.norm(x) * (1 + sc[:, None]) + sh[:, None], g, sh2, sc2, g2


class AdaContinuous(nn.Module):
    """AdaLayerNormContinuous: SiLU + linear -> scale, shift (in that order)."""

    def __init__(self, d):
        super().__init__()
        self.linear = nn.Linear(d, 2 * d)
        self.norm = PlainLayerNorm(d)

    def forward(self, x, emb):
        sc, sh = self.linear(F.silu(emb)).chunk(2, dim=1)
        return self.norm(x) * (1 + sc[:, None]) + sh[:, None]


class GeluProj(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.proj = nn.Linear(i, o)

    def forward(self, x):
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.net = nn.ModuleList([GeluProj(d, 4 * d), nn.Identity(), nn.Linear(4 * d, d)])

    def forward(self, x):
        for m in self.net:
            x = m(x)
        return x


class JointAttention(nn.Module):
    def __init__(self, d, heads, pre_only):
        super().__init__()
        self.heads = heads
        self.to_q, self.to_k, self.to_v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.add_q_proj, self.add_k_proj, self.add_v_proj = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.to_out = nn.ModuleList([nn.Linear(d, d)])
        self.to_add_out = None if pre_only else nn.Linear(d, d)

    def forward(self, x, c):
        b, n, d = x.shape
        hd = d // self.heads

        def split(t):
            return t.reshape(b, -1, self.heads, hd).transpose(1, 2)

        q = torch.cat([split(self.to_q(x)), split(self.add_q_proj(c))], dim=2)
        k = torch.cat([split(self.to_k(x)), split(self.add_k_proj(c))], dim=2)
        v = torch.cat([split(self.to_v(x)), split(self.add_v_proj(c))], dim=2)
        w = torch.softmax((q @ k.transpose(-1, -2)) * hd ** -0.5, dim=-1)
        o = (w @ v).transpose(1, 2).reshape(b, -1, d)
        xo, co = o[:, :n], o[:, n:]
        return self.to_out[0](xo), (None if self.to_add_out is None else self.to_add_out(co))


class JointTransformerBlock(nn.Module):
    def __init__(self, d, heads, pre_only):
        super().__init__()
        self.pre_only = pre_only
        self.norm1 = AdaZero(d)
        self.norm1_context = AdaContinuous(d) if pre_only else AdaZero(d)
        self.attn = JointAttention(d, heads, pre_only)
        self.norm2 = PlainLayerNorm(d)
        self.ff = FeedForward(d)
        if not pre_only:
            self.norm2_context = PlainLayerNorm(d)
            self.ff_context = FeedForward(d)

    def forward(self, x, c, temb):
        nx, g, sh2, sc2, g2 = self.norm1(x, temb)
        if self.pre_only:
            nc = self.norm1_context(c, temb)
        else:
            nc, cg, csh2, csc2, cg2 = self.norm1_context(c, temb)
        ax, ac = self.attn(nx, nc)
        x = x + g[:, None] * ax
        x = x + g2[:, None] * self.ff(self.norm2(x) * (1 + sc2[:, None]) + sh2[:, None])
        if self.pre_only:
            return x, None
        c = c + cg[:, None] * ac
        c = c + cg2[:, None] * self.ff_context(self.norm2_context(c) * (1 + csc2[:, None]) + csh2[:, None])
        return x, c


class SD3Transformer2DModel(nn.Module):
    def __init__(self, c=DIT):
        super().__init__()
        d = c["num_attention_heads"] * c["attention_head_dim"]
        self.c = c
        self.pos_embed = PatchEmbed(c)
        self.time_text_embed = TimeTextEmbed(d, c["pooled_projection_dim"])
        self.context_embedder = nn.Linear(c["joint_attention_dim"], c["caption_projection_dim"])
        self.transformer_blocks = nn.ModuleList(
            [JointTransformerBlock(d, c["num_attention_heads"], i == c["num_layers"] - 1) for i in range(c["num_layers"])])
        self.norm_out = AdaContinuous(d)
        self.proj_out = nn.Linear(d, c["patch_size"] ** 2 * c["out_channels"])
        # adaLN-Zero initialisation (DiT): every modulation and the output start at zero
        for blk in self.transformer_blocks:
            for m in (blk.norm1.linear, blk.norm1_context.linear):
                nn.init.zeros_(m.weight)
                nn.init.zeros_(m.bias)
        for m in (self.norm_out.linear, self.proj_out):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, hidden_states, encoder_hidden_states, pooled_projections, timestep):
        h, w = hidden_states.shape[-2:]
        p = self.c["patch_size"]
        x = self.pos_embed(hidden_states)
        temb = self.time_text_embed(timestep, pooled_projections)
        c = self.context_embedder(encoder_hidden_states)
        for blk in self.transformer_blocks:
            x, c = blk(x, c, temb)
        x = self.proj_out(self.norm_out(x, temb))
        b = x.shape[0]
        x = x.reshape(b, h // p, w // p, p, p, self.c["out_channels"])
        return torch.einsum("nhwpqc->nchpwq", x).reshape(b, self.c["out_channels"], h, w)


def transformer_config():
    return dict({"_class_name": "SD3Transformer2DModel", "_diffusers_version": t2i.DIFFUSERS_VERSION,
                 "dual_attention_layers": [], "qk_norm": None}, **DIT)


# ------------------------------------------------------------------------------------------------------------------
# the frozen text encoder (tiny-t2i's CLIP) as SD3 reads it


class ClipWithProjection(nn.Module):
    """CLIPTextModelWithProjection over tiny-t2i's CLIP, identity text_projection: -> text_embeds, last_hidden_state,
    hidden_states.0 .. hidden_states.N (Optimum's SD3 outputs)."""

    def __init__(self, te):
        super().__init__()
        self.te = te
        d = t2i.TEXT["hidden_size"]
        self.text_projection = nn.Linear(d, d, bias=False)
        with torch.no_grad():
            self.text_projection.weight.copy_(torch.eye(d))

    def forward(self, input_ids):
        te = self.te
        b, n = input_ids.shape
        h = te.token_embedding(input_ids) + te.position_embedding(te.position_ids[:, :n])
        mask = torch.full((n, n), torch.finfo(h.dtype).min).triu(1)[None, None]
        states = [h]
        for layer in te.layers:
            h = layer(h, mask)
            states.append(h)
        last = te.final_layer_norm(h)
        eos = (input_ids == te.eos_id).to(torch.int32).argmax(dim=-1)
        return (self.text_projection(last[torch.arange(b), eos]), last, *states)


class TextCache:
    """Every caption of the corpus (and "") encoded once: hidden_states[-2] [TOKENS, 64] and text_embeds [64]."""

    @torch.no_grad()
    def __init__(self, enc, text):
        self.enc, self.text = enc, text
        self.map = {}
        caps = [""] + t2i_data.corpus()
        for i in range(0, len(caps), 256):
            self.add(caps[i:i + 256])

    def add(self, caps):
        out = self.enc(self.text.ids(caps))
        pooled, hid = out[0], out[-2]
        for k, cpt in enumerate(caps):
            self.map[cpt] = (hid[k], pooled[k])

    @torch.no_grad()
    def __call__(self, caps):
        missing = [c for c in dict.fromkeys(caps) if c not in self.map]
        if missing:
            self.add(missing)
        return torch.stack([self.map[c][0] for c in caps]), torch.stack([self.map[c][1] for c in caps])


# ------------------------------------------------------------------------------------------------------------------
# flow matching: sampling and training


def flow_sigmas(steps, shift=1.0):
    """FlowMatchEulerDiscreteScheduler.set_timesteps (static shift): linspace(sigma_max, sigma_min) x 1000 / 1000, the
    shift, then a final 0."""
    base = np.linspace(1, 1000, 1000)[::-1] / 1000
    shifted = shift * base / (1 + (shift - 1) * base)
    s = np.linspace(shifted[0] * 1000, shifted[-1] * 1000, steps) / 1000
    s = shift * s / (1 + (shift - 1) * s)
    return np.append(s, 0.0)


@torch.no_grad()
def flow_sample(dit, vae, cache, prompts, seed, scaling, steps=25, guidance=3.0):
    """SD3's pipeline: CFG batch [uncond; cond] (the empty prompt), x <- x + (s_next - s) v. -> images in [0, 1]."""
    n = len(prompts)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, 8, 8, generator=g, dtype=torch.float32).double()
    hc, pc = cache(prompts)
    hu, pu = cache([""] * n)
    hid, pool = torch.cat([hu, hc]), torch.cat([pu, pc])
    sig = flow_sigmas(steps)
    for i in range(steps):
        t = torch.full((2 * n,), float(sig[i] * 1000), dtype=torch.float32)
        v = dit(torch.cat([x, x]).float(), hid, pool, t).double()
        vu, vc = v.chunk(2)
        v = vu + guidance * (vc - vu)
        x = x + (sig[i + 1] - sig[i]) * v
    img = vae.decode((x / scaling).float())
    return (img / 2 + 0.5).clamp(0, 1)


def evaluate(dit, vae, cache, scaling, classifier, n, guidances, steps=25, seed=1234):
    ps = t2i_data.eval_prompts(n, seed=7)
    idx = {c: i for i, c in enumerate(t2i_data.COLOURS)}
    digits = torch.tensor([p["digit"] for p in ps])
    fgs = torch.tensor([idx[p["fg"]] for p in ps])
    bgs = torch.tensor([idx[p["bg"]] for p in ps])
    out = {}
    for gd in guidances:
        imgs = torch.cat([flow_sample(dit, vae, cache, [p["prompt"] for p in ps[i:i + 100]], seed + i, scaling, steps, gd)
                          for i in range(0, n, 100)])
        out[str(gd)] = {k: round(v, 4) for k, v in t2i.judge(classifier, imgs, digits, fgs, bgs).items()}
    return out


def train(args, say, gen, vae, scaling, cache, lat):
    dit = SD3Transformer2DModel()
    ema = SD3Transformer2DModel()
    ema.load_state_dict(dit.state_dict())
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(dit.parameters(), lr=args.lr, weight_decay=0.0)
    t0, run = time.time(), None
    for step in range(args.steps):
        for grp in opt.param_groups:
            grp["lr"] = t2i.lr_at(step, args.steps, args.lr, min(300, args.steps // 10 + 1))
        z0, caps = t2i.latent_batch(lat, args.batch, gen, scaling)
        hid, pool = cache(caps)
        s = torch.sigmoid(torch.randn(args.batch, generator=gen))  # logit-normal(0, 1), as SD3
        noise = torch.randn(z0.shape, generator=gen)
        zt = (1 - s)[:, None, None, None] * z0 + s[:, None, None, None] * noise
        pred = dit(zt, hid, pool, s * 1000)
        loss = F.mse_loss(pred, noise - z0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(dit.parameters(), 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), dit.parameters()):
                pe.mul_(decay).add_(pm, alpha=1 - decay)
        run = loss.item() if run is None else 0.98 * run + 0.02 * loss.item()
        done = step + 1
        if done % args.log_every == 0 or done == args.steps:
            el = time.time() - t0
            say(f"dit step {done} loss {run:.4f} lr {t2i.lr_at(step, args.steps, args.lr, 300):.2e} {el:.0f}s "
                f"({el / done:.3f} s/step)")
        if done % args.ckpt_every == 0 or done == args.steps:
            path = os.path.join(CACHE, f"dit-{done}.pt")
            os.makedirs(CACHE, exist_ok=True)
            torch.save({"dit": dit.state_dict(), "ema": ema.state_dict(), "scaling": scaling,
                        "meta": {"steps": done, "loss_ema": round(run, 5), "seconds": round(time.time() - t0)},
                        "args": vars(args)}, path)
            say(f"checkpoint {path}")
            if args.eval_every and done % args.eval_every == 0 and args.eval_samples:
                res = evaluate(ema.eval(), vae, cache, scaling, t2i.load_classifier(), args.eval_samples, args.guidances)
                say(f"eval at step {done} (EMA, flow Euler 25, {args.eval_samples} prompts): {json.dumps(res)}")
    return ema.eval(), time.time() - t0, run


# ------------------------------------------------------------------------------------------------------------------
# export


def export(dit, enc, vae, scaling, tok_src, out, meta, guidance):
    os.makedirs(out, exist_ok=True)
    for sub in ("tokenizer", "text_encoder", "transformer", "vae_encoder", "vae_decoder", "scheduler"):
        if os.path.isdir(os.path.join(out, sub)):
            shutil.rmtree(os.path.join(out, sub))
    shutil.copytree(tok_src, os.path.join(out, "tokenizer"))
    cfg_path = os.path.join(out, "tokenizer", "tokenizer_config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["model_max_length"] = TOKENS
    t2i.write_json(cfg_path, cfg)
    text = t2i.Text(os.path.join(out, "tokenizer"))
    t2i.write_json(os.path.join(out, "model_index.json"), {
        "_class_name": "StableDiffusion3Pipeline", "_diffusers_version": t2i.DIFFUSERS_VERSION,
        "default_guidance": guidance, "max_sequence_length": 0, "feature_extractor": [None, None],
        "image_encoder": [None, None], "scheduler": ["diffusers", SCHEDULER["_class_name"]],
        "text_encoder": ["transformers", "CLIPTextModelWithProjection"], "text_encoder_2": [None, None],
        "text_encoder_3": [None, None], "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": [None, None],
        "tokenizer_3": [None, None], "transformer": ["diffusers", "SD3Transformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"]})
    t2i.write_json(os.path.join(out, "scheduler", "scheduler_config.json"), SCHEDULER)
    tc = t2i.text_config(text.vocab_size, text.bos, text.eos)
    tc["architectures"] = ["CLIPTextModelWithProjection"]
    t2i.write_json(os.path.join(out, "text_encoder", "config.json"), tc)
    t2i.write_json(os.path.join(out, "transformer", "config.json"), transformer_config())
    t2i.write_json(os.path.join(out, "vae_encoder", "config.json"), t2i.vae_config(scaling))
    t2i.write_json(os.path.join(out, "vae_decoder", "config.json"), t2i.vae_config(scaling))
    shutil.copy(os.path.join(ROOT, "models", "tiny-t2i", "attributes.json"), os.path.join(out, "attributes.json"))
    shutil.copy(os.path.join(ROOT, "models", "tiny-t2i", "calibration_prompts.txt"), os.path.join(out, "calibration_prompts.txt"))
    nl = t2i.TEXT["num_hidden_layers"]
    ids = text.ids(["a red seven on a blue background", ""])
    hs = [f"hidden_states.{i}" for i in range(nl + 1)]
    axes = {"input_ids": {0: "batch_size", 1: "sequence_length"}, "text_embeds": {0: "batch_size"},
            "last_hidden_state": {0: "batch_size", 1: "sequence_length"}}
    axes.update({h: {0: "batch_size", 1: "sequence_length"} for h in hs})
    t2i.onnx_export(enc, (ids,), os.path.join(out, "text_encoder", "model.onnx"), ["input_ids"],
                    ["text_embeds", "last_hidden_state", *hs], axes)
    d = t2i.TEXT["hidden_size"]
    t2i.onnx_export(dit, (torch.randn(2, 4, 8, 8), torch.randn(2, TOKENS, d), torch.randn(2, d), torch.tensor([981.0, 981.0])),
                    os.path.join(out, "transformer", "model.onnx"),
                    ["hidden_states", "encoder_hidden_states", "pooled_projections", "timestep"], ["out_hidden_states"],
                    {"hidden_states": {0: "batch_size", 2: "height", 3: "width"},
                     "encoder_hidden_states": {0: "batch_size", 1: "sequence_length"},
                     "pooled_projections": {0: "batch_size"}, "timestep": {0: "step"},
                     "out_hidden_states": {0: "batch_size", 2: "height", 3: "width"}})
    t2i.onnx_export(t2i.VaeDecoderExport(vae), (torch.randn(2, 4, 8, 8),), os.path.join(out, "vae_decoder", "model.onnx"),
                    ["latent_sample"], ["sample"], t2i.DEC_AXES)
    t2i.onnx_export(t2i.VaeEncoderExport(vae), (torch.randn(2, 3, 32, 32),), os.path.join(out, "vae_encoder", "model.onnx"),
                    ["sample"], ["latent_parameters"], t2i.ENC_AXES)
    with open(os.path.join(out, "training.json"), "w") as f:
        json.dump(meta, f, indent=2)


@torch.no_grad()
def verify(dit, out):
    """The exported transformer against PyTorch in onnxruntime (python onnxruntime if present, else skipped)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    g = torch.Generator().manual_seed(5)
    x, c, p = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, TOKENS, 64, generator=g), torch.randn(3, 64, generator=g)
    t = torch.tensor([421.0, 421.0, 421.0])
    s = ort.InferenceSession(os.path.join(out, "transformer", "model.onnx"))
    got = s.run(None, {"hidden_states": x.numpy(), "encoder_hidden_states": c.numpy(), "pooled_projections": p.numpy(),
                       "timestep": t.numpy()})[0]
    return float(np.abs(got - dit(x, c, p, t).numpy()).max())


def main():
    ap = argparse.ArgumentParser(description="train and export tiny-dit (see the module docstring)")
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "tiny-dit"))
    ap.add_argument("--t2i-ckpt", default=T2I_CKPT, help="tiny-t2i's training checkpoint (its VAE and text encoder)")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--colourings", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--ckpt-every", type=int, default=1000)
    ap.add_argument("--eval-every", type=int, default=2000)
    ap.add_argument("--eval-samples", type=int, default=200)
    ap.add_argument("--guidances", type=lambda s: [float(x) for x in s.split(",")], default=[1.0, 3.0, 5.0])
    ap.add_argument("--guidance", type=float, default=3.0, help="default_guidance written to model_index.json")
    ap.add_argument("--plan", action="store_true")
    ap.add_argument("--export-only", default=None)
    ap.add_argument("--eval-only", default=None)
    args = ap.parse_args()
    blas = t2i.use_openblas(args.threads)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    tok_dir = os.path.join(t2i.CACHE, "tokenizer")
    text77 = t2i.Text(tok_dir)
    dit0 = SD3Transformer2DModel()
    plan = (f"plan: transformer {t2i.nparams(dit0):,} params {DIT}; {args.steps} steps, batch {args.batch}, lr {args.lr}, "
            f"seed {args.seed}, {args.threads} threads, BLAS {blas}; VAE and text encoder from {args.t2i_ckpt}")
    print(plan, flush=True)
    if args.plan:
        return
    te, _, vae, scaling, _ = t2i.load_ckpt(args.t2i_ckpt, text77)
    for p in list(te.parameters()) + list(vae.parameters()):
        p.requires_grad_(False)
    enc = ClipWithProjection(te).eval()
    os.makedirs(CACHE, exist_ok=True)
    tok16 = os.path.join(CACHE, "tokenizer16")
    if os.path.isdir(tok16):
        shutil.rmtree(tok16)
    shutil.copytree(tok_dir, tok16)
    cfgp = os.path.join(tok16, "tokenizer_config.json")
    with open(cfgp) as f:
        cfg = json.load(f)
    cfg["model_max_length"] = TOKENS
    t2i.write_json(cfgp, cfg)
    text = t2i.Text(tok16)
    cache = TextCache(enc, text)
    if args.eval_only or args.export_only:
        ck = torch.load(args.eval_only or args.export_only)
        dit = SD3Transformer2DModel()
        dit.load_state_dict(ck["ema"])
        dit.eval()
        if args.eval_only:
            print(json.dumps(evaluate(dit, vae, cache, scaling, t2i.load_classifier(), args.eval_samples, args.guidances)))
            return
        export(dit, enc, vae, scaling, tok_dir, args.out, ck["meta"], args.guidance)
        print(json.dumps({"exported": os.path.abspath(args.out), "bytes": t2i.folder_bytes(args.out), "verify": verify(dit, args.out)}))
        return
    os.makedirs(args.out, exist_ok=True)
    log = open(os.path.join(args.out, "train-log.txt"), "a")

    def say(msg):
        print(msg, flush=True)
        log.write(msg + "\n")
        log.flush()

    say(f"start {time.strftime('%Y-%m-%d %H:%M:%S')}: {vars(args)} torch {torch.__version__}")
    say(plan)
    gen = torch.Generator().manual_seed(args.seed)
    lat = t2i.encode_training_set(vae, args.colourings, args.seed, say)
    dit, secs, loss = train(args, say, gen, vae, scaling, cache, lat)
    cls = t2i.load_classifier()
    res = evaluate(dit, vae, cache, scaling, cls, args.eval_samples, args.guidances) if args.eval_samples else None
    say(f"final eval (EMA, flow Euler 25, {args.eval_samples} prompts): {json.dumps(res)}")
    meta = {"steps": args.steps, "batch": args.batch, "seed": args.seed, "lr": args.lr, "ema": args.ema,
            "scaling_factor": scaling, "parameters": {"transformer": t2i.nparams(dit)}, "seconds": round(secs),
            "loss_ema": loss and round(loss, 5), "eval_python_flow25": res, "guidance": args.guidance,
            "torch": torch.__version__}
    export(dit, enc, vae, scaling, tok_dir, args.out, meta, args.guidance)
    say(f"exported to {args.out} ({t2i.folder_bytes(args.out):,} bytes); onnxruntime check: {verify(dit, args.out)}")


if __name__ == "__main__":
    main()
