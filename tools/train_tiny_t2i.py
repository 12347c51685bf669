"""Train the embedded text-to-image model (tiny-t2i) and export it exactly as `optimum-cli export onnx` lays out a
Stable Diffusion 1.x pipeline.

Usage (Debian: apt-get install -y python3-torch python3-onnx python3-regex; `npm ci` for the data):
  /usr/bin/python3 tools/train_tiny_t2i.py [--vae-steps 2500] [--unet-steps 7000] [--out models/tiny-t2i] [--seed 0]
  /usr/bin/python3 tools/train_tiny_t2i.py --plan                       # print the plan and sizes, train nothing
  /usr/bin/python3 tools/train_tiny_t2i.py --export-only .train-cache/tiny-t2i/unet-7000.pt --out models/tiny-t2i
  /usr/bin/python3 tools/train_tiny_t2i.py --eval-only .train-cache/tiny-t2i/unet-7000.pt --eval-samples 500

What it builds (the diffusers / transformers classes, small; data and judge in tools/t2i_data.py):
  tokenizer/     CLIP BPE written by tools/make_bpe_vocab.py over the caption corpus (vocab.json, merges.txt,
                 special_tokens_map.json, tokenizer_config.json; pad "<|endoftext|>" as SD 1.x; model_max_length 77).
                 Ids are computed by tools/clip_tokenizer_reference.py's Tokenizer (HF CLIPTokenizer semantics):
                 BOS + tokens + EOS, padded with EOS to 77.
  text_encoder/  CLIPTextModel: token + position embeddings (77), pre-LN causal encoder layers (quick_gelu MLP), final
                 LayerNorm; pooler_output at the first EOS. ONNX: input_ids int64 [batch_size, sequence_length] ->
                 last_hidden_state, pooler_output. Trained jointly with the UNet.
  unet/          UNet2DConditionModel: conv_in; sinusoidal time projection (flip_sin_to_cos, freq_shift 0) +
                 TimestepEmbedding; CrossAttnDownBlock2D x2, UNetMidBlock2DCrossAttn, CrossAttnUpBlock2D x2
                 (ResnetBlock2D + Transformer2DModel: GroupNorm, 1x1 proj_in, BasicTransformerBlock with self-attention,
                 cross-attention on last_hidden_state and a GEGLU feed-forward, 1x1 proj_out); epsilon prediction.
                 ONNX: sample [batch_size,4,height,width], timestep float32 scalar (rank 0, as Optimum exports it),
                 encoder_hidden_states [batch_size,sequence_length,hidden] -> out_sample.
  vae_encoder/   AutoencoderKL encoder + quant_conv: sample [batch_size,3,H,W] in [-1,1] -> latent_parameters
  vae_decoder/   post_quant_conv + decoder: latent_sample [batch_size,4,H/4,W/4] -> sample in [-1,1]
                 (block_out_channels of length 3: factor 4, 32x32 images <-> 4x8x8 latents). scaling_factor =
                 1/std of sampled latents of 4,096 training images, as diffusers users compute it; shift_factor none.
  scheduler/     DDIMScheduler with SD 1.x's training schedule (scaled_linear 0.00085..0.012, 1000 steps), leading
                 spacing, steps_offset 1, set_alpha_to_one false, clip_sample false.
  model_index.json  what diffusers' StableDiffusionPipeline.save_config writes, plus "default_guidance" (diffusers
                 has no such field). attributes.json: the palette, digits and phrasings, for judges (not a component).

Training (seeded): 1) the VAE alone (MSE + small KL, AdamW, cosine); 2) scaling_factor; 3) UNet + text encoder on
sampled, scaled latents of the frozen VAE: DDPM epsilon loss with min-SNR-5 weighting, 10% empty captions,
AdamW with warmup + cosine, gradient clipping 1.0, EMA 0.999 of both. Checkpoints in .train-cache/tiny-t2i/.
The evaluation samples held-out-style prompts with DDIM + classifier-free guidance in PyTorch, decodes with the VAE
and judges the digit (the embedded MNIST classifier's weights, read from models/mnist-classifier/model.onnx) and
both colours (from the pixels). After export the ONNX files are run in onnxruntime-node against PyTorch outputs.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mnist_data  # noqa: E402
import t2i_data  # noqa: E402
from clip_tokenizer_reference import Tokenizer  # noqa: E402

ROOT = os.path.normpath(os.path.join(HERE, ".."))
CACHE = os.path.join(mnist_data.CACHE_DIR, "tiny-t2i")
DIFFUSERS_VERSION = "0.31.0"
TRANSFORMERS_VERSION = "4.46.3"
T = 1000
MAX_LEN = 77

TEXT = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 256}
UNET = {"block_out_channels": [32, 64], "layers_per_block": 1, "attention_head_dim": 2, "norm_num_groups": 16}
VAE = {"block_out_channels": [32, 32, 32], "layers_per_block": 1, "norm_num_groups": 16, "latent_channels": 4}


# ------------------------------------------------------------------------------------------------------------------
# CLIPTextModel


class CLIPAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x, mask):
        b, n, d = x.shape
        hd = d // self.heads

        def split(t):
            return t.reshape(b, n, self.heads, hd).transpose(1, 2)

        q, k, v = split(self.q_proj(x)) * hd ** -0.5, split(self.k_proj(x)), split(self.v_proj(x))
        w = torch.softmax(q @ k.transpose(-1, -2) + mask, dim=-1)
        return self.out_proj((w @ v).transpose(1, 2).reshape(b, n, d))


class CLIPEncoderLayer(nn.Module):
    def __init__(self, d, heads, inter):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(d, eps=1e-5)
        self.self_attn = CLIPAttention(d, heads)
        self.layer_norm2 = nn.LayerNorm(d, eps=1e-5)
        self.fc1 = nn.Linear(d, inter)
        self.fc2 = nn.Linear(inter, d)

    def forward(self, x, mask):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        h = self.fc1(self.layer_norm2(x))
        return x + self.fc2(h * torch.sigmoid(1.702 * h))  # quick_gelu


class CLIPTextModel(nn.Module):
    def __init__(self, vocab_size, eos_id, c=TEXT):
        super().__init__()
        d = c["hidden_size"]
        self.eos_id = eos_id
        self.token_embedding = nn.Embedding(vocab_size, d)
        self.position_embedding = nn.Embedding(MAX_LEN, d)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding.weight, std=0.01)
        self.register_buffer("position_ids", torch.arange(MAX_LEN)[None], persistent=False)
        self.layers = nn.ModuleList(
            [CLIPEncoderLayer(d, c["num_attention_heads"], c["intermediate_size"]) for _ in range(c["num_hidden_layers"])])
        self.final_layer_norm = nn.LayerNorm(d, eps=1e-5)

    def forward(self, input_ids):
        b, n = input_ids.shape
        h = self.token_embedding(input_ids) + self.position_embedding(self.position_ids[:, :n])
        mask = torch.full((n, n), torch.finfo(h.dtype).min).triu(1)[None, None]
        for layer in self.layers:
            h = layer(h, mask)
        last = self.final_layer_norm(h)
        # transformers (eos_token_id != 2): pool at the first EOS; int32 argmax as it casts for ONNX
        eos = (input_ids == self.eos_id).to(torch.int32).argmax(dim=-1)
        return last, last[torch.arange(b), eos]


def text_config(vocab_size, bos_id, eos_id):
    return {
        "_name_or_path": "", "architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": bos_id,
        "dropout": 0.0, "eos_token_id": eos_id, "hidden_act": "quick_gelu", "hidden_size": TEXT["hidden_size"],
        "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": TEXT["intermediate_size"],
        "layer_norm_eps": 1e-05, "max_position_embeddings": MAX_LEN, "model_type": "clip_text_model",
        "num_attention_heads": TEXT["num_attention_heads"], "num_hidden_layers": TEXT["num_hidden_layers"],
        "pad_token_id": eos_id, "projection_dim": TEXT["hidden_size"], "torch_dtype": "float32",
        "transformers_version": TRANSFORMERS_VERSION, "vocab_size": vocab_size,
    }


# ------------------------------------------------------------------------------------------------------------------
# UNet2DConditionModel


def timestep_embedding(t, dim):
    """diffusers get_timestep_embedding(flip_sin_to_cos=True, downscale_freq_shift=0): [cos, sin]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResnetBlock2D(nn.Module):
    def __init__(self, cin, cout, temb, groups, eps):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout) if temb else None
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb=None):
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time_emb_proj is not None:
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class Attention(nn.Module):
    """diffusers Attention as BasicTransformerBlock uses it: q/k/v without bias, to_out with bias."""

    def __init__(self, dim, ctx_dim, heads):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(ctx_dim, dim, bias=False)
        self.to_v = nn.Linear(ctx_dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])

    def forward(self, x, ctx):
        b, n, d = x.shape
        hd = d // self.heads

        def split(t):
            return t.reshape(b, t.shape[1], self.heads, hd).transpose(1, 2)

        q, k, v = split(self.to_q(x)), split(self.to_k(ctx)), split(self.to_v(ctx))
        w = torch.softmax(q @ k.transpose(-1, -2) * hd ** -0.5, dim=-1)
        return self.to_out[0]((w @ v).transpose(1, 2).reshape(b, n, d))


class GEGLU(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x):
        h, gate = self.proj(x).chunk(2, dim=-1)
        return h * F.gelu(gate)


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, ctx_dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, ctx_dim, heads)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = nn.ModuleList([GEGLU(dim, 4 * dim), nn.Linear(4 * dim, dim)])

    def forward(self, h, ctx):
        x = self.norm1(h)
        h = h + self.attn1(x, x)
        h = h + self.attn2(self.norm2(h), ctx)
        return h + self.ff[1](self.ff[0](self.norm3(h)))


class Transformer2DModel(nn.Module):
    def __init__(self, ch, ctx_dim, heads, groups):
        super().__init__()
        self.norm = nn.GroupNorm(groups, ch, eps=1e-6)
        self.proj_in = nn.Conv2d(ch, ch, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(ch, ctx_dim, heads)])
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x, ctx):
        b, c, hh, ww = x.shape
        h = self.proj_in(self.norm(x)).reshape(b, c, hh * ww).transpose(1, 2)
        for blk in self.transformer_blocks:
            h = blk(h, ctx)
        return x + self.proj_out(h.transpose(1, 2).reshape(b, c, hh, ww))


class Block(nn.Module):
    """CrossAttnDownBlock2D / CrossAttnUpBlock2D / UNetMidBlock2DCrossAttn: resnets, attentions, a resampler."""

    def __init__(self, resnets, attentions, sampler=None, name=None):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        self.attentions = nn.ModuleList(attentions)
        if name:
            setattr(self, name, nn.ModuleList([sampler]))
        self.sampler_name = name


class UNet2DConditionModel(nn.Module):
    def __init__(self, ctx_dim, c=UNET, in_ch=4):
        super().__init__()
        boc, lpb, heads, g = c["block_out_channels"], c["layers_per_block"], c["attention_head_dim"], c["norm_num_groups"]
        temb = 4 * boc[0]
        self.ch0 = boc[0]
        self.time_embedding = nn.Sequential(nn.Linear(boc[0], temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = nn.Conv2d(in_ch, boc[0], 3, padding=1)
        n = len(boc)
        self.down_blocks = nn.ModuleList()
        cout = boc[0]
        for i in range(n):
            cin, cout = cout, boc[i]
            last = i == n - 1
            self.down_blocks.append(Block(
                [ResnetBlock2D(cin if j == 0 else cout, cout, temb, g, 1e-5) for j in range(lpb)],
                [Transformer2DModel(cout, ctx_dim, heads, g) for _ in range(lpb)],
                None if last else nn.Conv2d(cout, cout, 3, stride=2, padding=1), None if last else "downsamplers"))
        top = boc[-1]
        self.mid_block = Block([ResnetBlock2D(top, top, temb, g, 1e-5), ResnetBlock2D(top, top, temb, g, 1e-5)],
                               [Transformer2DModel(top, ctx_dim, heads, g)])
        rev = list(reversed(boc))
        self.up_blocks = nn.ModuleList()
        out_ch = rev[0]
        for i in range(n):
            prev, out_ch, inp = out_ch, rev[i], rev[min(i + 1, n - 1)]
            last = i == n - 1
            res = []
            for j in range(lpb + 1):
                skip = inp if j == lpb else out_ch
                res.append(ResnetBlock2D((prev if j == 0 else out_ch) + skip, out_ch, temb, g, 1e-5))
            self.up_blocks.append(Block(
                res, [Transformer2DModel(out_ch, ctx_dim, heads, g) for _ in range(lpb + 1)],
                None if last else nn.Conv2d(out_ch, out_ch, 3, padding=1), None if last else "upsamplers"))
        self.conv_norm_out = nn.GroupNorm(g, boc[0], eps=1e-5)
        self.conv_out = nn.Conv2d(boc[0], in_ch, 3, padding=1)

    def forward(self, sample, timestep, encoder_hidden_states):
        b = sample.shape[0]
        t = timestep.reshape(-1).expand(b)  # a scalar (Optimum) or one per sample
        emb = self.time_embedding(timestep_embedding(t, self.ch0))
        ctx = encoder_hidden_states
        h = self.conv_in(sample)
        skips = [h]
        for blk in self.down_blocks:
            for res, att in zip(blk.resnets, blk.attentions):
                h = att(res(h, emb), ctx)
                skips.append(h)
            if blk.sampler_name:
                h = blk.downsamplers[0](h)
                skips.append(h)
        mb = self.mid_block
        h = mb.resnets[1](mb.attentions[0](mb.resnets[0](h, emb), ctx), emb)
        for blk in self.up_blocks:
            for res, att in zip(blk.resnets, blk.attentions):
                h = att(res(torch.cat([h, skips.pop()], dim=1), emb), ctx)
            if blk.sampler_name:
                h = blk.upsamplers[0](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.conv_norm_out(h)))


def unet_config(ctx_dim):
    n = len(UNET["block_out_channels"])
    return {
        "_class_name": "UNet2DConditionModel", "_diffusers_version": DIFFUSERS_VERSION, "act_fn": "silu",
        "addition_embed_type": None, "addition_embed_type_num_heads": 64, "addition_time_embed_dim": None,
        "attention_head_dim": UNET["attention_head_dim"], "attention_type": "default",
        "block_out_channels": UNET["block_out_channels"], "center_input_sample": False, "class_embed_type": None,
        "class_embeddings_concat": False, "conv_in_kernel": 3, "conv_out_kernel": 3, "cross_attention_dim": ctx_dim,
        "cross_attention_norm": None, "down_block_types": ["CrossAttnDownBlock2D"] * n, "downsample_padding": 1,
        "dropout": 0.0, "dual_cross_attention": False, "encoder_hid_dim": None, "encoder_hid_dim_type": None,
        "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": UNET["layers_per_block"],
        "mid_block_only_cross_attention": None, "mid_block_scale_factor": 1, "mid_block_type": "UNetMidBlock2DCrossAttn",
        "norm_eps": 1e-05, "norm_num_groups": UNET["norm_num_groups"], "num_attention_heads": None,
        "num_class_embeds": None, "only_cross_attention": False, "out_channels": 4,
        "projection_class_embeddings_input_dim": None, "resnet_out_scale_factor": 1.0, "resnet_skip_time_act": False,
        "resnet_time_scale_shift": "default", "reverse_transformer_layers_per_block": None, "sample_size": 8,
        "time_cond_proj_dim": None, "time_embedding_act_fn": None, "time_embedding_dim": None,
        "time_embedding_type": "positional", "timestep_post_act": None, "transformer_layers_per_block": 1,
        "up_block_types": ["CrossAttnUpBlock2D"] * n, "upcast_attention": False, "use_linear_projection": False,
    }


# ------------------------------------------------------------------------------------------------------------------
# AutoencoderKL


class VaeAttention(nn.Module):
    """The VAE mid-block attention: GroupNorm, one head, q/k/v/out Linear with bias, residual."""

    def __init__(self, ch, groups):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, ch, eps=1e-6)
        self.to_q, self.to_k, self.to_v = nn.Linear(ch, ch), nn.Linear(ch, ch), nn.Linear(ch, ch)
        self.to_out = nn.ModuleList([nn.Linear(ch, ch)])

    def forward(self, x):
        b, c, hh, ww = x.shape
        h = self.group_norm(x).reshape(b, c, hh * ww).transpose(1, 2)
        w = torch.softmax(self.to_q(h) @ self.to_k(h).transpose(1, 2) * c ** -0.5, dim=-1)
        return x + self.to_out[0](w @ self.to_v(h)).transpose(1, 2).reshape(b, c, hh, ww)


class VaeMid(nn.Module):
    def __init__(self, ch, g):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(ch, ch, 0, g, 1e-6), ResnetBlock2D(ch, ch, 0, g, 1e-6)])
        self.attentions = nn.ModuleList([VaeAttention(ch, g)])

    def forward(self, x):
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class Downsample(nn.Module):
    """diffusers Downsample2D(padding=0) in the VAE: pad right/bottom by one, 3x3 stride-2 conv."""

    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class VaeBlock(nn.Module):
    def __init__(self, resnets, sampler, name):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        self.name = name
        if name:
            setattr(self, name, nn.ModuleList([sampler]))

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        return getattr(self, self.name)[0](x) if self.name else x


class Encoder(nn.Module):
    def __init__(self, c=VAE):
        super().__init__()
        boc, lpb, g, lat = c["block_out_channels"], c["layers_per_block"], c["norm_num_groups"], c["latent_channels"]
        self.conv_in = nn.Conv2d(3, boc[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        cout = boc[0]
        for i, ch in enumerate(boc):
            cin, cout = cout, ch
            last = i == len(boc) - 1
            self.down_blocks.append(VaeBlock([ResnetBlock2D(cin if j == 0 else cout, cout, 0, g, 1e-6) for j in range(lpb)],
                                             None if last else Downsample(cout), None if last else "downsamplers"))
        self.mid_block = VaeMid(boc[-1], g)
        self.conv_norm_out = nn.GroupNorm(g, boc[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(boc[-1], 2 * lat, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for blk in self.down_blocks:
            h = blk(h)
        return self.conv_out(F.silu(self.conv_norm_out(self.mid_block(h))))


class Decoder(nn.Module):
    def __init__(self, c=VAE):
        super().__init__()
        boc, lpb, g, lat = c["block_out_channels"], c["layers_per_block"], c["norm_num_groups"], c["latent_channels"]
        rev = list(reversed(boc))
        self.conv_in = nn.Conv2d(lat, rev[0], 3, padding=1)
        self.mid_block = VaeMid(rev[0], g)
        self.up_blocks = nn.ModuleList()
        cout = rev[0]
        for i, ch in enumerate(rev):
            cin, cout = cout, ch
            last = i == len(rev) - 1
            self.up_blocks.append(VaeBlock([ResnetBlock2D(cin if j == 0 else cout, cout, 0, g, 1e-6) for j in range(lpb + 1)],
                                           None if last else Upsample(cout), None if last else "upsamplers"))
        self.conv_norm_out = nn.GroupNorm(g, boc[0], eps=1e-6)
        self.conv_out = nn.Conv2d(boc[0], 3, 3, padding=1)

    def forward(self, z):
        h = self.mid_block(self.conv_in(z))
        for blk in self.up_blocks:
            h = blk(h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


class AutoencoderKL(nn.Module):
    def __init__(self, c=VAE):
        super().__init__()
        lat = c["latent_channels"]
        self.encoder = Encoder(c)
        self.decoder = Decoder(c)
        self.quant_conv = nn.Conv2d(2 * lat, 2 * lat, 1)
        self.post_quant_conv = nn.Conv2d(lat, lat, 1)

    def parameters_of(self, x):
        """The latent distribution's parameters: mean || logvar (what Optimum's vae_encoder outputs)."""
        return self.quant_conv(self.encoder(x))

    @staticmethod
    def sample_latent(params, gen=None):
        mean, logvar = params.chunk(2, dim=1)
        std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
        return mean + std * torch.randn(mean.shape, generator=gen)

    def decode(self, z):
        return self.decoder(self.post_quant_conv(z))


class VaeEncoderExport(nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, sample):
        return self.vae.parameters_of(sample)


class VaeDecoderExport(nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample):
        return self.vae.decode(latent_sample)


def vae_config(scaling):
    n = len(VAE["block_out_channels"])
    return {
        "_class_name": "AutoencoderKL", "_diffusers_version": DIFFUSERS_VERSION, "act_fn": "silu",
        "block_out_channels": VAE["block_out_channels"], "down_block_types": ["DownEncoderBlock2D"] * n,
        "force_upcast": True, "in_channels": 3, "latent_channels": VAE["latent_channels"], "latents_mean": None,
        "latents_std": None, "layers_per_block": VAE["layers_per_block"], "mid_block_add_attention": True,
        "norm_num_groups": VAE["norm_num_groups"], "out_channels": 3, "sample_size": t2i_data.IMAGE_SIZE,
        "scaling_factor": scaling, "shift_factor": None, "up_block_types": ["UpDecoderBlock2D"] * n,
        "use_post_quant_conv": True, "use_quant_conv": True,
    }


# ------------------------------------------------------------------------------------------------------------------
# schedule, sampling, judging


def alphas_cumprod():
    """SD 1.x: scaled_linear betas, sqrt-spaced from 0.00085 to 0.012 over 1000 steps (float64, as a reference)."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, T, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0)


SCHEDULER = {
    "_class_name": "DDIMScheduler", "_diffusers_version": DIFFUSERS_VERSION, "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False, "clip_sample_range": 1.0,
    "dynamic_thresholding_ratio": 0.995, "num_train_timesteps": T, "prediction_type": "epsilon",
    "rescale_betas_zero_snr": False, "sample_max_value": 1.0, "set_alpha_to_one": False, "steps_offset": 1,
    "thresholding": False, "timestep_spacing": "leading", "trained_betas": None,
}


class Text:
    """Prompt -> ids (HF CLIPTokenizer semantics via tools/clip_tokenizer_reference.py), cached."""

    def __init__(self, folder):
        self.tok = Tokenizer(folder)
        self.cache = {}
        self.vocab_size = len(self.tok.vocab)
        self.bos, self.eos, self.pad = (self.tok.ids[k] for k in ("bos_token", "eos_token", "pad_token"))

    def ids(self, prompts):
        rows = []
        for p in prompts:
            if p not in self.cache:
                self.cache[p] = self.tok.encode(p)["ids"]
            rows.append(self.cache[p])
        return torch.tensor(rows, dtype=torch.int64)


@torch.no_grad()
def ddim_sample(unet, te, vae, text, prompts, seed, scaling, steps=25, guidance=3.0):
    """diffusers DDIMScheduler (eta 0, leading spacing, steps_offset 1, set_alpha_to_one false, no clipping) with
    classifier-free guidance as StableDiffusionPipeline does it ([uncond; cond]). -> images [N,3,32,32] in [0,1]."""
    ac = alphas_cumprod()
    n = len(prompts)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, 8, 8, generator=g, dtype=torch.float32).double()
    cond = te(text.ids(prompts))[0]
    unc = te(text.ids([""] * n))[0]
    ctx = torch.cat([unc, cond])
    ratio = T // steps
    ts = (np.arange(0, steps) * ratio)[::-1] + 1
    for t in ts:
        eps = unet(torch.cat([x, x]).float(), torch.tensor(float(t)), ctx).double()
        e_u, e_c = eps.chunk(2)
        eps = e_u + guidance * (e_c - e_u)
        a_t = ac[t]
        a_prev = ac[t - ratio] if t - ratio >= 0 else ac[0]
        x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    img = vae.decode((x / scaling).float())
    return (img / 2 + 0.5).clamp(0, 1)


def load_classifier():
    """The embedded MNIST classifier (models/mnist-classifier), its weights read from the ONNX initializers."""
    import onnx
    from onnx import numpy_helper
    from train_classifier import Classifier
    m = onnx.load(os.path.join(ROOT, "models", "mnist-classifier", "model.onnx"))
    c = Classifier()
    c.load_state_dict({t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in m.graph.initializer})
    return c.eval()


@torch.no_grad()
def judge(classifier, imgs, digits, fgs, bgs):
    """-> dict of accuracies (digit, fg, bg, all three) over the images."""
    fg, bg, fg_rgb, bg_rgb = t2i_data.judge_colours(imgs)
    logits, _ = classifier(t2i_data.digit_mask(imgs, fg_rgb, bg_rgb))
    d_ok = logits.argmax(1) == digits
    f_ok, b_ok = fg == fgs, bg == bgs
    return {"digit": d_ok.float().mean().item(), "fg": f_ok.float().mean().item(), "bg": b_ok.float().mean().item(),
            "all": (d_ok & f_ok & b_ok).float().mean().item()}


def evaluate(unet, te, vae, text, scaling, classifier, n, guidances, steps=25, seed=1234):
    ps = t2i_data.eval_prompts(n, seed=7)
    idx = {c: i for i, c in enumerate(t2i_data.COLOURS)}
    digits = torch.tensor([p["digit"] for p in ps])
    fgs = torch.tensor([idx[p["fg"]] for p in ps])
    bgs = torch.tensor([idx[p["bg"]] for p in ps])
    out = {}
    for gd in guidances:
        imgs = torch.cat([ddim_sample(unet, te, vae, text, [p["prompt"] for p in ps[i:i + 100]], seed + i, scaling,
                                      steps, gd) for i in range(0, n, 100)])
        out[str(gd)] = {k: round(v, 4) for k, v in judge(classifier, imgs, digits, fgs, bgs).items()}
    return out, imgs


@torch.no_grad()
def vae_check(vae, classifier, n=500):
    """Reconstructions of held-out digits in random colours, judged like samples (and the originals, as a bound)."""
    data = t2i_data.CaptionedDigits("test")
    g = torch.Generator().manual_seed(99)
    x, _, d, f, b = data.batch(n, g, dropout=0.0)
    rec = (vae.decode(vae.parameters_of(x).chunk(2, dim=1)[0]) / 2 + 0.5).clamp(0, 1)
    orig = judge(classifier, (x / 2 + 0.5), d, f, b)
    got = judge(classifier, rec, d, f, b)
    mse = F.mse_loss(rec * 2 - 1, x).item()
    return {"originals": {k: round(v, 4) for k, v in orig.items()},
            "reconstructions": {k: round(v, 4) for k, v in got.items()}, "mse": round(mse, 5)}


# ------------------------------------------------------------------------------------------------------------------
# training


def lr_at(step, total, base, warm):
    if step < warm:
        return base * (step + 1) / warm
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm))))


def nparams(*mods):
    return sum(p.numel() for m in mods for p in m.parameters())


def train_vae(args, say, gen):
    data = t2i_data.CaptionedDigits("train")
    vae = AutoencoderKL()
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    t0, run = time.time(), None
    for step in range(args.vae_steps):
        for grp in opt.param_groups:
            grp["lr"] = lr_at(step, args.vae_steps, args.vae_lr, min(200, args.vae_steps // 10 + 1))
        x = data.batch(args.batch, gen, dropout=0.0)[0]
        params = vae.parameters_of(x)
        mean, logvar = params.chunk(2, dim=1)
        logvar = logvar.clamp(-30.0, 20.0)
        z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=gen)
        rec = vae.decode(z)
        rec_loss = ((rec - x) ** 2).flatten(1).sum(1).mean()
        kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).flatten(1).sum(1).mean()
        loss = (rec_loss + args.kl_weight * kl) / x[0].numel()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        run = loss.item() if run is None else 0.98 * run + 0.02 * loss.item()
        if (step + 1) % args.log_every == 0 or step + 1 == args.vae_steps:
            el = time.time() - t0
            say(f"vae step {step + 1} loss {run:.5f} (kl {kl.item():.1f}) {el:.0f}s ({el / (step + 1):.3f} s/step)")
        if (step + 1) % 500 == 0 and step + 1 < args.vae_steps:
            vae.eval()
            say(f"VAE check at step {step + 1}: {json.dumps(vae_check(vae, load_classifier())['reconstructions'])}")
            vae.train()
    vae.eval()
    for p in vae.parameters():
        p.requires_grad_(False)
    return vae, time.time() - t0


@torch.no_grad()
def scaling_factor(vae, n=4096):
    """1 / std of sampled latents of n training images, as diffusers users compute an AutoencoderKL's factor."""
    data = t2i_data.CaptionedDigits("train")
    g = torch.Generator().manual_seed(1)
    zs = []
    for i in range(0, n, 256):
        x = data.batch(256, g, dropout=0.0)[0]
        zs.append(vae.sample_latent(vae.parameters_of(x), g))
    z = torch.cat(zs)
    return float(f"{1.0 / z.std().item():.5g}"), float(z.mean().item())


@torch.no_grad()
def encode_training_set(vae, colourings, seed, say):
    """The frozen VAE's latent parameters (mean || logvar) of every training digit in `colourings` colour pairs each
    (drawn at random, so every pair is covered about equally): the UNet then never runs the encoder."""
    data = t2i_data.CaptionedDigits("train")
    g = torch.Generator().manual_seed(seed + 17)
    n = len(data) * colourings
    digit = data.digit.repeat(colourings)
    pair = torch.randint(0, len(t2i_data.PAIRS), (n,), generator=g)
    fg = torch.tensor([t2i_data.PAIRS[p][0] for p in pair.tolist()])
    bg = torch.tensor([t2i_data.PAIRS[p][1] for p in pair.tolist()])
    gray = data.gray.repeat(colourings, 1, 1, 1)
    params = torch.empty(n, 2 * VAE["latent_channels"], 8, 8)
    t0 = time.time()
    for i in range(0, n, 256):
        params[i:i + 256] = vae.parameters_of(t2i_data.colourize(gray[i:i + 256], fg[i:i + 256], bg[i:i + 256]))
    say(f"encoded {n:,} coloured training digits ({colourings} colourings each) in {time.time() - t0:.0f}s")
    return {"params": params, "digit": digit, "fg": fg, "bg": bg}


def latent_batch(lat, n, gen, scaling):
    """Sampled, scaled latents and their captions (10% empty) from the encoded training set."""
    idx = torch.randint(0, len(lat["digit"]), (n,), generator=gen)
    tpl = torch.randint(0, len(t2i_data.TEMPLATES), (n,), generator=gen)
    drop = torch.rand(n, generator=gen) < t2i_data.CFG_DROPOUT
    d, f, b = lat["digit"][idx].tolist(), lat["fg"][idx].tolist(), lat["bg"][idx].tolist()
    caps = ["" if drop[i] else t2i_data.caption(d[i], f[i], b[i], int(tpl[i])) for i in range(n)]
    return AutoencoderKL.sample_latent(lat["params"][idx], gen) * scaling, caps


def train_unet(args, say, gen, vae, scaling, text, lat, te=None, unet=None, start=0):
    te = te or CLIPTextModel(text.vocab_size, text.eos)
    unet = unet or UNet2DConditionModel(TEXT["hidden_size"])
    ema_te, ema_unet = CLIPTextModel(text.vocab_size, text.eos), UNet2DConditionModel(TEXT["hidden_size"])
    ema_te.load_state_dict(te.state_dict())
    ema_unet.load_state_dict(unet.state_dict())
    for p in list(ema_te.parameters()) + list(ema_unet.parameters()):
        p.requires_grad_(False)
    params = list(te.parameters()) + list(unet.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    ac = alphas_cumprod().float()
    snr = ac / (1 - ac)
    weight = torch.clamp(snr, max=5.0) / snr  # min-SNR-5, epsilon prediction
    t0, run = time.time(), None
    for step in range(start, args.unet_steps):
        for grp in opt.param_groups:
            grp["lr"] = lr_at(step, args.unet_steps, args.lr, min(300, args.unet_steps // 10 + 1))
        z0, caps = latent_batch(lat, args.batch, gen, scaling)
        t = torch.randint(0, T, (args.batch,), generator=gen)
        noise = torch.randn(z0.shape, generator=gen)
        a = ac[t][:, None, None, None]
        zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
        ctx = te(text.ids(caps))[0]
        pred = unet(zt, t.float(), ctx)
        loss = (((pred - noise) ** 2).mean(dim=(1, 2, 3)) * weight[t]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        run = ema_step(((ema_te, te), (ema_unet, unet)), min(args.ema, (1 + step) / (10 + step)), run, loss.item())
        done = step + 1
        if done % args.log_every == 0 or done == args.unet_steps:
            el = time.time() - t0
            say(f"unet step {done} loss {run:.4f} lr {lr_at(step, args.unet_steps, args.lr, 300):.2e} "
                f"{el:.0f}s ({el / (done - start):.3f} s/step)")
        if done % args.ckpt_every == 0 or done == args.unet_steps:
            meta = {"unet_steps": done, "loss_ema": round(run, 5), "unet_seconds": round(time.time() - t0)}
            save_ckpt(os.path.join(CACHE, f"unet-{done}.pt"), te, unet, ema_te, ema_unet, vae, scaling, meta, args)
            say(f"checkpoint {os.path.join(CACHE, f'unet-{done}.pt')}")
            if args.eval_every and (done % args.eval_every == 0 or done == args.unet_steps) and args.eval_samples:
                ema_te.eval()
                ema_unet.eval()
                res, _ = evaluate(ema_unet, ema_te, vae, text, scaling, load_classifier(), args.eval_samples,
                                  args.guidances)
                say(f"eval at step {done} (EMA, DDIM 25, {args.eval_samples} prompts): {json.dumps(res)}")
                ema_te.train()
                ema_unet.train()
    return ema_te.eval(), ema_unet.eval(), time.time() - t0, run


@torch.no_grad()
def ema_step(pairs, decay, run, loss):
    """Moves each EMA model of (ema, model) pairs towards its model; -> the running loss (0.98 smoothing)."""
    for e, m in pairs:
        for pe, pm in zip(e.parameters(), m.parameters()):
            pe.mul_(decay).add_(pm, alpha=1 - decay)
    return loss if run is None else 0.98 * run + 0.02 * loss


def save_ckpt(path, te, unet, ema_te, ema_unet, vae, scaling, meta, args):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({"te": te.state_dict(), "unet": unet.state_dict(), "ema_te": ema_te.state_dict(),
                "ema_unet": ema_unet.state_dict(), "vae": vae.state_dict(), "scaling": scaling,
                "meta": meta, "args": vars(args)}, path)


def load_ckpt(path, text):
    ck = torch.load(path)
    vae = AutoencoderKL()
    vae.load_state_dict(ck["vae"])
    te, unet = CLIPTextModel(text.vocab_size, text.eos), UNet2DConditionModel(TEXT["hidden_size"])
    te.load_state_dict(ck["ema_te"])
    unet.load_state_dict(ck["ema_unet"])
    return te.eval(), unet.eval(), vae.eval(), ck["scaling"], ck["meta"]


# ------------------------------------------------------------------------------------------------------------------
# tokenizer and export


def build_tokenizer(folder, merges):
    """Runs tools/make_bpe_vocab.py over the caption corpus (its CLIP-format files, unchanged)."""
    os.makedirs(os.path.dirname(folder) or ".", exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write("\n".join(t2i_data.corpus()) + "\n")
        corpus = f.name
    try:
        subprocess.run([sys.executable, os.path.join(HERE, "make_bpe_vocab.py"), "--corpus", corpus, "--merges",
                        str(merges), "--out", folder, "--pad", "eos"], check=True, stdout=subprocess.DEVNULL)
    finally:
        os.remove(corpus)


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")


TEXT_AXES = {"input_ids": {0: "batch_size", 1: "sequence_length"},
             "last_hidden_state": {0: "batch_size", 1: "sequence_length"}, "pooler_output": {0: "batch_size"}}
UNET_AXES = {"sample": {0: "batch_size", 2: "height", 3: "width"},
             "encoder_hidden_states": {0: "batch_size", 1: "sequence_length"},
             "out_sample": {0: "batch_size", 2: "height", 3: "width"}}
DEC_AXES = {"latent_sample": {0: "batch_size", 2: "latent_height", 3: "latent_width"},
            "sample": {0: "batch_size", 2: "latent_height * 4", 3: "latent_width * 4"}}
ENC_AXES = {"sample": {0: "batch_size", 2: "sample_height", 3: "sample_width"},
            "latent_parameters": {0: "batch_size", 2: "sample_height / 4", 3: "sample_width / 4"}}


def onnx_export(module, inputs, path, in_names, out_names, axes):
    import onnx
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(module, inputs, path, input_names=in_names, output_names=out_names, dynamic_axes=axes,
                          opset_version=17, do_constant_folding=True)
    m = onnx.load(path)
    onnx.checker.check_model(m)


def export(te, unet, vae, scaling, text, tok_dir, out, meta, guidance):
    """Writes the Optimum layout into out (the tokenizer folder is copied from tok_dir)."""
    os.makedirs(out, exist_ok=True)
    for sub in ("tokenizer", "text_encoder", "unet", "vae_encoder", "vae_decoder", "scheduler"):
        if os.path.isdir(os.path.join(out, sub)):
            shutil.rmtree(os.path.join(out, sub))
    shutil.copytree(tok_dir, os.path.join(out, "tokenizer"))
    ctx_dim = TEXT["hidden_size"]
    write_json(os.path.join(out, "model_index.json"), {
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": DIFFUSERS_VERSION,
        "default_guidance": guidance, "feature_extractor": [None, None], "image_encoder": [None, None],
        "requires_safety_checker": False, "safety_checker": [None, None],
        "scheduler": ["diffusers", SCHEDULER["_class_name"]], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"]})
    write_json(os.path.join(out, "scheduler", "scheduler_config.json"), SCHEDULER)
    write_json(os.path.join(out, "text_encoder", "config.json"), text_config(text.vocab_size, text.bos, text.eos))
    write_json(os.path.join(out, "unet", "config.json"), unet_config(ctx_dim))
    write_json(os.path.join(out, "vae_encoder", "config.json"), vae_config(scaling))
    write_json(os.path.join(out, "vae_decoder", "config.json"), vae_config(scaling))
    write_json(os.path.join(out, "attributes.json"), {
        "about": "what tiny-t2i's prompts say and how a judge reads it back (tools/t2i_data.py); not a pipeline component",
        "image_size": t2i_data.IMAGE_SIZE, "palette": {k: list(v) for k, v in t2i_data.PALETTE.items()},
        "digits": t2i_data.DIGITS, "templates": t2i_data.TEMPLATES, "border_pixels": t2i_data.BORDER,
        "fg_radius": t2i_data.FG_RADIUS, "min_fg_pixels": t2i_data.MIN_FG_PIXELS, "digit_crop": [2, 2, 28, 28]})
    ids = text.ids(["a red seven on a blue background", ""])
    onnx_export(te, (ids,), os.path.join(out, "text_encoder", "model.onnx"), ["input_ids"],
                ["last_hidden_state", "pooler_output"], TEXT_AXES)
    onnx_export(unet, (torch.randn(2, 4, 8, 8), torch.tensor(981.0), torch.randn(2, MAX_LEN, ctx_dim)),
                os.path.join(out, "unet", "model.onnx"), ["sample", "timestep", "encoder_hidden_states"],
                ["out_sample"], UNET_AXES)
    onnx_export(VaeDecoderExport(vae), (torch.randn(2, 4, 8, 8),), os.path.join(out, "vae_decoder", "model.onnx"),
                ["latent_sample"], ["sample"], DEC_AXES)
    onnx_export(VaeEncoderExport(vae), (torch.randn(2, 3, 32, 32),), os.path.join(out, "vae_encoder", "model.onnx"),
                ["sample"], ["latent_parameters"], ENC_AXES)
    with open(os.path.join(out, "training.json"), "w") as f:
        json.dump(meta, f, indent=2)


VERIFY_JS = r"""
const ort = require(process.argv[2]);
const fs = require('fs');
const ref = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));
const dir = process.argv[4];
function tensor(t) {
  if (t.type === 'int64') return new ort.Tensor('int64', BigInt64Array.from(t.data.map(BigInt)), t.dims);
  return new ort.Tensor('float32', Float32Array.from(t.data), t.dims);
}
(async () => {
  const out = {};
  for (const [name, c] of Object.entries(ref)) {
    const s = await ort.InferenceSession.create(`${dir}/${name}/model.onnx`);
    const feeds = {};
    for (const [k, t] of Object.entries(c.inputs)) feeds[k] = tensor(t);
    const r = await s.run(feeds);
    const diffs = {};
    for (const [k, t] of Object.entries(c.outputs)) {
      const got = r[k];
      let m = 0;
      for (let i = 0; i < t.data.length; i++) m = Math.max(m, Math.abs(got.data[i] - t.data[i]));
      diffs[k] = { maxAbsDiff: m, dims: Array.from(got.dims), match: JSON.stringify(Array.from(got.dims)) === JSON.stringify(t.dims) };
    }
    const find = (md, n) => (Array.isArray(md) ? md.find((x) => x.name === n) : md && md[n]);
    const meta = (names, md) => names.map((n) => { const x = find(md, n); return x ? `${n}:${x.type}[${(x.shape || []).join(',')}]` : n; });
    out[name] = { inputs: meta(s.inputNames, s.inputMetadata), outputs: meta(s.outputNames, s.outputMetadata), diffs };
  }
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(String(e)); process.exit(1); });
"""


@torch.no_grad()
def verify_onnx(te, unet, vae, text, out, scaling):
    """Runs every exported graph in onnxruntime-node on fresh inputs (another batch size than the export's) and
    compares with PyTorch. -> the parsed report, or None when node / onnxruntime-node are not at hand."""
    ort_dir = os.path.join(ROOT, "node_modules", "onnxruntime-node")
    node = shutil.which("node")
    if not node or not os.path.isdir(ort_dir):
        return None
    g = torch.Generator().manual_seed(5)
    ids = text.ids(["a green two on a magenta background", "the digit nine in white on black", ""])
    lat = torch.randn(3, 4, 8, 8, generator=g)
    ctx = torch.randn(3, MAX_LEN, TEXT["hidden_size"], generator=g)
    img = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1

    def t(x):
        return {"data": x.flatten().tolist(), "dims": list(x.shape), "type": "int64" if x.dtype == torch.int64 else "float32"}

    last, pooled = te(ids)
    ref = {
        "text_encoder": {"inputs": {"input_ids": t(ids)}, "outputs": {"last_hidden_state": t(last), "pooler_output": t(pooled)}},
        "unet": {"inputs": {"sample": t(lat), "timestep": t(torch.tensor(421.0)), "encoder_hidden_states": t(ctx)},
                 "outputs": {"out_sample": t(unet(lat, torch.tensor(421.0), ctx))}},
        "vae_decoder": {"inputs": {"latent_sample": t(lat)}, "outputs": {"sample": t(vae.decode(lat))}},
        "vae_encoder": {"inputs": {"sample": t(img)}, "outputs": {"latent_parameters": t(vae.parameters_of(img))}},
    }
    with tempfile.TemporaryDirectory() as tmp:
        rp, sp = os.path.join(tmp, "ref.json"), os.path.join(tmp, "verify.js")
        with open(rp, "w") as f:
            json.dump(ref, f)
        with open(sp, "w") as f:
            f.write(VERIFY_JS)
        r = subprocess.run([node, sp, ort_dir, rp, os.path.abspath(out)], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"onnxruntime-node could not run the export: {r.stderr.strip()}")
    return json.loads(r.stdout)


OPENBLAS = os.path.join(CACHE, "openblas", "root", "usr", "lib", "x86_64-linux-gnu", "openblas-pthread")


def use_openblas(threads):
    """Debian's PyTorch 1.13 links the reference BLAS (BLAS_INFO=generic): its matrix products ran 5-8x slower than
    OpenBLAS here. If OpenBLAS was unpacked privately (see models/tiny-t2i/README.md) and is not in use yet, re-run
    this process with it first in LD_LIBRARY_PATH; nothing system-wide changes. -> a description for the plan."""
    generic = "BLAS_INFO=generic" in torch.__config__.show()
    if not generic:
        return "as built"
    if OPENBLAS in os.environ.get("LD_LIBRARY_PATH", "").split(":"):
        return f"OpenBLAS from {OPENBLAS}"
    if os.path.exists(os.path.join(OPENBLAS, "libblas.so.3")) and not os.environ.get("T2I_NO_OPENBLAS"):
        env = dict(os.environ, LD_LIBRARY_PATH=":".join(filter(None, [OPENBLAS, os.environ.get("LD_LIBRARY_PATH")])),
                   OPENBLAS_NUM_THREADS=str(threads))
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    return "reference (slow; see models/tiny-t2i/README.md for OpenBLAS)"


def folder_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


# ------------------------------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description="train and export tiny-t2i (see the module docstring)")
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "tiny-t2i"))
    ap.add_argument("--vae-steps", type=int, default=2500)
    ap.add_argument("--unet-steps", type=int, default=7000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--vae-lr", type=float, default=1e-3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--kl-weight", type=float, default=1e-3, help="KL weight against the per-image summed MSE")
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--merges", type=int, default=400, help="BPE merges for make_bpe_vocab.py (it stops earlier "
                    "when no pair occurs twice)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--colourings", type=int, default=8, help="colour pairs per training digit in the latent cache")
    ap.add_argument("--threads", type=int, default=1, help="torch threads; 2 only on an otherwise idle 2-core machine "
                    "(with other load, OpenMP's 2 threads ran 6-10x slower than 1 here)")
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--ckpt-every", type=int, default=1000)
    ap.add_argument("--eval-every", type=int, default=2000, help="evaluate at these checkpoints (0: only at the end)")
    ap.add_argument("--eval-samples", type=int, default=200)
    ap.add_argument("--guidances", type=lambda s: [float(x) for x in s.split(",")], default=[1.0, 3.0, 5.0])
    ap.add_argument("--guidance", type=float, default=3.0, help="default_guidance written to model_index.json")
    ap.add_argument("--plan", action="store_true", help="print the plan and the model sizes, train nothing")
    ap.add_argument("--export-only", default=None, help="a .train-cache/tiny-t2i/unet-*.pt checkpoint to export")
    ap.add_argument("--eval-only", default=None, help="a checkpoint to evaluate (--eval-samples, --guidances)")
    ap.add_argument("--resume-vae", default=None, help="a checkpoint whose VAE (and scaling) to reuse; skips phase 1")
    ap.add_argument("--no-verify", action="store_true", help="skip running the export in onnxruntime-node")
    args = ap.parse_args()
    blas = use_openblas(args.threads)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    os.makedirs(CACHE, exist_ok=True)
    tok_dir = os.path.join(CACHE, "tokenizer")
    build_tokenizer(tok_dir, args.merges)
    text = Text(tok_dir)
    words = sorted({w for c in t2i_data.corpus() for w in c.replace(",", " ").split()})
    multi = [w for w in words if len(text.tok.content_ids(w)) > 1]

    te0, unet0, vae0 = CLIPTextModel(text.vocab_size, text.eos), UNet2DConditionModel(TEXT["hidden_size"]), AutoencoderKL()
    plan = (f"plan: tokenizer {text.vocab_size} tokens ({len(words)} caption words, {len(multi)} of them more than one "
            f"token{': ' + ', '.join(multi) if multi else ''}); text encoder {nparams(te0):,} params {TEXT}; "
            f"UNet {nparams(unet0):,} params {UNET}; VAE {nparams(vae0):,} params {VAE} "
            f"(encoder {nparams(vae0.encoder, vae0.quant_conv):,}, decoder {nparams(vae0.decoder, vae0.post_quant_conv):,}); "
            f"VAE {args.vae_steps} steps, UNet+text {args.unet_steps} steps, batch {args.batch}, seed {args.seed}, "
            f"{args.threads} threads, BLAS {blas}; corpus {len(t2i_data.corpus())} captions; out {os.path.abspath(args.out)}")
    print(plan, flush=True)
    if args.plan:
        return

    if args.eval_only or args.export_only:
        te, unet, vae, scaling, meta = load_ckpt(args.eval_only or args.export_only, text)
        if args.eval_only:
            cls = load_classifier()
            print(json.dumps({"vae": vae_check(vae, cls), "samples": evaluate(unet, te, vae, text, scaling, cls,
                                                                                args.eval_samples, args.guidances)[0]}))
            return
        export(te, unet, vae, scaling, text, tok_dir, args.out, meta, args.guidance)
        report = None if args.no_verify else verify_onnx(te, unet, vae, text, args.out, scaling)
        print(json.dumps({"exported": os.path.abspath(args.out), "bytes": folder_bytes(args.out), "verify": report}))
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
    if args.resume_vae:
        ck = torch.load(args.resume_vae)
        vae = AutoencoderKL()
        vae.load_state_dict(ck["vae"])
        vae.eval()
        for p in vae.parameters():
            p.requires_grad_(False)
        scaling, vae_s = ck["scaling"], 0.0
        say(f"VAE and scaling_factor {scaling} from {args.resume_vae}")
    else:
        vae, vae_s = train_vae(args, say, gen)
        scaling, zmean = scaling_factor(vae)
        say(f"scaling_factor {scaling} (latent mean {zmean:.4f})")
    cls = load_classifier()
    vc = vae_check(vae, cls)
    say(f"VAE check on 500 held-out digits: {json.dumps(vc)}")
    lat = encode_training_set(vae, args.colourings, args.seed, say)
    te, unet, unet_s, loss = train_unet(args, say, gen, vae, scaling, text, lat)
    res = evaluate(unet, te, vae, text, scaling, cls, args.eval_samples, args.guidances)[0] if args.eval_samples else None
    say(f"final eval (EMA, DDIM 25, {args.eval_samples} prompts): {json.dumps(res)}")
    meta = {"vae_steps": args.vae_steps, "unet_steps": args.unet_steps, "batch": args.batch, "seed": args.seed,
            "lr": args.lr, "vae_lr": args.vae_lr, "kl_weight": args.kl_weight, "ema": args.ema,
            "scaling_factor": scaling, "parameters": {"text_encoder": nparams(te), "unet": nparams(unet),
                                                      "vae": nparams(vae)},
            "vae_seconds": round(vae_s), "unet_seconds": round(unet_s), "loss_ema": loss and round(loss, 5),
            "vae_check": vc, "eval_python_ddim25": res, "guidance": args.guidance, "torch": torch.__version__}
    export(te, unet, vae, scaling, text, tok_dir, args.out, meta, args.guidance)
    say(f"exported to {args.out} ({folder_bytes(args.out):,} bytes)")
    if not args.no_verify:
        report = verify_onnx(te, unet, vae, text, args.out, scaling)
        say(f"onnxruntime-node check: {json.dumps(report)}" if report else "onnxruntime-node check skipped (no node)")


if __name__ == "__main__":
    main()
