"""Generate real-topology Stable Diffusion pipeline fixtures (random weights, reduced width) in the on-disk forms
that ONNX exporters write, for tests of the pipeline loader, tokenizer, sampler and `dq info` / `dq sample`.

Usage (Debian's PyTorch 1.13 CPU build and onnx 1.12: `apt-get install -y python3-torch python3-onnx`):

    /usr/bin/python3 tools/make_sd_fixtures.py [--out test/fixtures] [--only sd15-optimum,sdxl-optimum,...,lcm-optimum]
                                               [--legacy-timestep int64|float32]
                                               [--unet-channels 160,320,640,640 --unet-heads 8 --unet-groups 32
                                                --sample-size 32]   (sd15-optimum only: the bench's wider unet)

Regenerating gives byte-identical files (fixed seeds, one thread; the same torch and onnx versions assumed).
Writes six pipeline folders under --out:

  sd15-optimum/  StableDiffusionPipeline as `optimum-cli export onnx` writes it (about 1.4 MB):
                 model_index.json (the diffusers pipeline config: `vae` entry, but vae_decoder/ + vae_encoder/
                 folders), scheduler/ (PNDMScheduler, SD 1.5's config), tokenizer/ (CLIP BPE, pad <|endoftext|>),
                 text_encoder/ (CLIPTextModel: input_ids int64 [batch_size, sequence_length] ->
                 last_hidden_state, pooler_output), unet/ (sample, timestep as a float32 scalar (rank 0),
                 encoder_hidden_states -> out_sample), vae_decoder/ (latent_sample -> sample, x8),
                 vae_encoder/ (sample -> latent_parameters = mean||logvar, 2x latent channels); every model folder
                 has its config.json with the fields diffusers / transformers write. Opset 17.
  sdxl-optimum/  StableDiffusionXLPipeline as Optimum writes it (about 1.7 MB): tokenizer/ (pad <|endoftext|>) and
                 tokenizer_2/ (pad "!" = id 0, registered as an added special token); text_encoder/ (CLIPTextModel,
                 quick_gelu: last_hidden_state, pooler_output, hidden_states.0..N) and text_encoder_2/
                 (CLIPTextModelWithProjection, gelu: text_embeds, last_hidden_state, hidden_states.0..N; N =
                 num_hidden_layers, as Optimum exports SDXL encoders with output_hidden_states); unet/ with
                 addition_embed_type "text_time": extra inputs text_embeds [batch, projection_dim] and time_ids
                 [batch, 6], cross_attention_dim = hidden_size(te1) + hidden_size(te2), and its weights in
                 unet/model.onnx_data (external data, as Optimum writes for models over 2 GB);
                 scheduler EulerDiscreteScheduler; VAE scaling_factor 0.13025.
  sd15-legacy/   OnnxStableDiffusionPipeline as diffusers' scripts/convert_stable_diffusion_checkpoint_to_onnx.py
                 writes it (about 1.45 MB): input_ids int32 [batch, sequence]; unet timestep rank 1 [batch] (int64 by
                 default, as exports before diffusers PR #1173 have it; --legacy-timestep float32 for later ones);
                 unet weights in unet/weights.pb (external data); vae_encoder outputs latent_sample (already sampled:
                 mean + std * RandomNormalLike); no config.json in the model folders; model_index.json with
                 ["diffusers", "OnnxRuntimeModel"] entries; the older tokenizer_config.json form; opset 14.
  sd15-fp16/     sd15-optimum in float16 as `optimum-cli export onnx --dtype fp16` writes it (about 1.0 MB): every
                 float input, output and weight is float16 (timestep a float16 scalar); the sinusoidal timestep
                 projection runs in float32 inside the graph (Cast in, Cast out), as diffusers computes it.
  ddpm-plain/    an unconditional pixel-space DDPMPipeline as DDPMPipeline.save_pretrained writes it, with its
                 UNet2DModel exported to unet/model.onnx (about 245 KB): model_index.json with only the diffusers
                 fields (_class_name, _diffusers_version, scheduler, unet), scheduler/ (DDPMScheduler with
                 google/ddpm-cifar10-32's schedule), unet/config.json (UNet2DModel, sample_size 32, 3 channels);
                 the graph takes sample float32 [batch, 3, height, width] (height and width dynamic: the size is
                 only in unet/config.json) and timestep float32 rank 1 [batch] -> out_sample. Opset 17.
  lcm-optimum/   LatentConsistencyModelPipeline as `optimum-cli export onnx` writes it (about 1.4 MB): sd15-optimum's
                 layout, tokenizer, text encoder and VAE (the same files), but the unet has diffusers'
                 time_cond_proj_dim (16 here; 256 in LCM-Dreamshaper-v7): its TimestepEmbedding has cond_proj =
                 Linear(time_cond_proj_dim, block_out_channels[0], bias=False), added to the sinusoidal time
                 projection before linear_1, and the graph takes a fourth input timestep_cond float32
                 [batch_size, 16] (Optimum's UNetOnnxConfig order: sample, timestep, encoder_hidden_states,
                 timestep_cond); unet/config.json says time_cond_proj_dim; scheduler/ is LCMScheduler with
                 LCM-Dreamshaper-v7's schedule (scaled_linear 0.00085..0.012, original_inference_steps 50, leading,
                 steps_offset 1, set_alpha_to_one, timestep_scaling 10); model_index.json as
                 LatentConsistencyModelPipeline writes it (requires_safety_checker, null safety_checker,
                 feature_extractor and image_encoder). Beside it, lcm-optimum.reference.json: diffusers'
                 get_guidance_scale_embedding(guidance - 1, 16) for a few guidance values, from the formula in numpy
                 (float64), for the tests to compare the engine's timestep_cond feeds with.

The three SD 1.5 fixtures hold the SAME weights (one seed; lcm-optimum shares their text encoder and VAE): the same prompt ids, latents and timestep give the same
outputs in every convention (float16 within its precision), which tests can use as a cross-check.

Topology (diffusers / transformers classes, reduced width; everything else as the real models):
  CLIP text encoder: token + position embeddings (77 positions), pre-LN encoder layers (causal self-attention,
    quick_gelu or gelu MLP), final LayerNorm; pooled output at the argmax(input_ids) position (the EOS token has
    the largest id, as transformers does when eos_token_id == 2); text_projection (no bias) for WithProjection.
  UNet2DConditionModel: conv_in; sinusoidal time projection (flip_sin_to_cos, freq_shift 0) + TimestepEmbedding;
    SDXL add_time_proj (Fourier features of each time id) concatenated with text_embeds -> add_embedding, added to
    the time embedding; down blocks CrossAttnDownBlock2D / DownBlock2D (layers_per_block resnets, Transformer2D
    after each resnet in cross-attention blocks, stride-2 conv downsamplers); UNetMidBlock2DCrossAttn; up blocks
    with layers_per_block + 1 resnets on skip concats, nearest x2 + conv upsamplers; GroupNorm, SiLU, conv_out.
    Transformer2D: GroupNorm, proj_in (1x1 conv for SD 1.5, Linear for SDXL: use_linear_projection),
    transformer_layers_per_block x BasicTransformerBlock (LayerNorm + self-attention, LayerNorm + cross-attention,
    LayerNorm + GEGLU feed-forward), proj_out, residual.
  AutoencoderKL: Encoder (conv_in, DownEncoderBlock2D x n with asymmetric-pad stride-2 downsamplers, mid block
    resnet + single-head attention + resnet, GroupNorm, SiLU, conv_out to 2 x latent channels) + quant_conv;
    post_quant_conv + Decoder (conv_in, mid block, UpDecoderBlock2D x n with layers_per_block + 1 resnets,
    nearest x2 + conv upsamplers, GroupNorm, SiLU, conv_out). Down/up factor 2^(len(block_out_channels) - 1) = 8.

Reduced sizes (real SD 1.5 / SDXL in brackets): text hidden 32 [768] / 32 and 40 [768 and 1280], 2 layers
[12 / 12 and 32], vocabulary of 546 tokens [49408] (256 byte symbols, their 256 `</w>` forms, 32 merges, 2
specials; the specials are ids 544 and 545 instead of 49406 and 49407), unet block_out_channels 4,8,16,16
[320,640,1280,1280] / 4,8,16 [320,640,1280], SDXL transformer_layers_per_block 1,1,2 [1,2,10], GroupNorm 2 groups
[32], latents 4 x 16 x 16 [4 x 64 x 64 / 4 x 128 x 128], images 128 x 128, VAE block_out_channels 4,4,8,8
[128,256,512,512]. The configs say what the graphs have. Module and parameter names follow diffusers /
transformers (`down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_k.weight`, `text_model.encoder.layers.0
.mlp.fc1`, `decoder.up_blocks.0.upsamplers.0.conv`), so node and initializer names look like a real export's;
intermediate value names are shortened (see shorten_value_names) to keep the files small.
PyTorch 1.13 has no float16 CPU kernels to trace with, so sd15-fp16 is exported in float32 and converted
(convert_fp16): float weights, constants, Casts and the graph's float inputs and outputs become float16.
"""
import argparse
import copy
import json
import math
import os
import shutil
from collections import defaultdict

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DIFFUSERS_VERSION = "0.31.0"
TRANSFORMERS_VERSION = "4.46.3"

# ----------------------------------------------------------------------------------------------------------------
# CLIP tokenizer files


def bytes_to_unicode():
    """CLIP's byte -> printable unicode table (printable latin-1 bytes map to themselves, the others to 256+n)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]  # in the byte order of bs, which is CLIP's vocabulary order


# In merge-rank order; each merge's parts exist before it (byte symbols, their </w> forms, or earlier merges).
MERGES = [
    ("t", "h"), ("th", "e</w>"), ("o", "f</w>"), ("p", "h"), ("o", "t"), ("ph", "ot"), ("phot", "o</w>"),
    ("c", "a"), ("ca", "t</w>"), ("r", "e"), ("re", "d</w>"), ("d", "o"), ("do", "g</w>"), ("a", "n"),
    ("an", "d</w>"), ("i", "n"), ("in", "g</w>"), ("o", "n</w>"), ("e", "r</w>"), ("b", "l"), ("bl", "u"),
    ("blu", "e</w>"), ("s", "t"), ("a", "r"), ("h", "o"), ("ho", "r"), ("hor", "s"), ("hors", "e</w>"),
    ("g", "r"), ("gr", "e"), ("e", "n</w>"), ("gre", "en</w>"),
]
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def clip_vocab():
    base = bytes_to_unicode()
    tokens = base + [b + "</w>" for b in base] + [a + b for a, b in MERGES] + [BOS, EOS]
    assert len(set(tokens)) == len(tokens), "duplicate token"
    known = set(base) | {b + "</w>" for b in base}
    for a, b in MERGES:
        assert a in known and b in known, (a, b)
        known.add(a + b)
    return {t: i for i, t in enumerate(tokens)}


VOCAB = clip_vocab()
VOCAB_SIZE = len(VOCAB)


def added(content, normalized=True):
    return {"content": content, "lstrip": False, "normalized": normalized, "rstrip": False, "single_word": False, "special": True}


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_tokenizer(folder, pad="<|endoftext|>", style="modern"):
    """vocab.json + merges.txt as CLIPTokenizer.save_vocabulary writes them, special_tokens_map.json and
    tokenizer_config.json as transformers writes them (style "modern": 4.3x with added_tokens_decoder;
    "legacy": the 2022 form with __type AddedToken entries)."""
    os.makedirs(folder, exist_ok=True)
    write_json(os.path.join(folder, "vocab.json"), VOCAB)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in MERGES:
            f.write(f"{a} {b}\n")
    tok = lambda c: {"content": c, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}
    pad_entry = pad if pad == EOS else {"content": pad, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
    write_json(os.path.join(folder, "special_tokens_map.json"), {"bos_token": tok(BOS), "eos_token": tok(EOS), "pad_token": pad_entry, "unk_token": tok(EOS)})
    if style == "legacy":
        at = lambda c: {"__type": "AddedToken", **tok(c)}
        cfg = {
            "add_prefix_space": False, "bos_token": at(BOS), "do_lower_case": True, "eos_token": at(EOS), "errors": "replace",
            "model_max_length": 77, "name_or_path": "openai/clip-vit-large-patch14", "pad_token": pad,
            "special_tokens_map_file": "./special_tokens_map.json", "tokenizer_class": "CLIPTokenizer", "unk_token": at(EOS),
        }
    else:
        dec = {}
        if pad != EOS:
            dec[str(VOCAB[pad])] = added(pad, normalized=False)
        dec[str(VOCAB[BOS])] = added(BOS)
        dec[str(VOCAB[EOS])] = added(EOS)
        cfg = {
            "add_prefix_space": False, "added_tokens_decoder": dec, "bos_token": BOS, "clean_up_tokenization_spaces": True,
            "do_lower_case": True, "eos_token": EOS, "errors": "replace", "model_max_length": 77, "pad_token": pad,
            "tokenizer_class": "CLIPTokenizer", "unk_token": EOS,
        }
    write_json(os.path.join(folder, "tokenizer_config.json"), cfg)


# ----------------------------------------------------------------------------------------------------------------
# CLIP text encoder


class CLIPAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x, mask):
        b, n, d = x.shape
        h = self.heads
        split = lambda t: t.reshape(b, n, h, d // h).transpose(1, 2)
        q = split(self.q_proj(x) * (d // h) ** -0.5)
        w = torch.softmax(torch.matmul(q, split(self.k_proj(x)).transpose(-1, -2)) + mask, dim=-1)
        return self.out_proj(torch.matmul(w, split(self.v_proj(x))).transpose(1, 2).reshape(b, n, d))


class CLIPMLP(nn.Module):
    def __init__(self, d, inter, act):
        super().__init__()
        self.fc1 = nn.Linear(d, inter)
        self.fc2 = nn.Linear(inter, d)
        self.act = act

    def forward(self, x):
        h = self.fc1(x)
        h = h * torch.sigmoid(1.702 * h) if self.act == "quick_gelu" else F.gelu(h)
        return self.fc2(h)


class CLIPEncoderLayer(nn.Module):
    def __init__(self, d, heads, inter, act):
        super().__init__()
        self.self_attn = CLIPAttention(d, heads)
        self.layer_norm1 = nn.LayerNorm(d, eps=1e-5)
        self.mlp = CLIPMLP(d, inter, act)
        self.layer_norm2 = nn.LayerNorm(d, eps=1e-5)

    def forward(self, x, mask):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class CLIPEmbeddings(nn.Module):
    def __init__(self, d, positions):
        super().__init__()
        self.token_embedding = nn.Embedding(VOCAB_SIZE, d)
        self.position_embedding = nn.Embedding(positions, d)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding.weight, std=0.01)
        self.register_buffer("position_ids", torch.arange(positions)[None], persistent=False)

    def forward(self, input_ids):
        return self.token_embedding(input_ids) + self.position_embedding(self.position_ids[:, :input_ids.shape[1]])


class CLIPEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layers = nn.ModuleList([CLIPEncoderLayer(c["hidden_size"], c["num_attention_heads"], c["intermediate_size"], c["hidden_act"])
                                     for _ in range(c["num_hidden_layers"])])

    def forward(self, h, mask):
        states = [h]
        for layer in self.layers:
            h = layer(h, mask)
            states.append(h)
        return states


class CLIPTextTransformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = CLIPEmbeddings(c["hidden_size"], c["max_position_embeddings"])
        self.encoder = CLIPEncoder(c)
        self.final_layer_norm = nn.LayerNorm(c["hidden_size"], eps=1e-5)

    def forward(self, input_ids):
        b, n = input_ids.shape
        h = self.embeddings(input_ids)
        mask = torch.full((n, n), torch.finfo(h.dtype).min).triu(1)[None, None]
        states = self.encoder(h, mask)
        last = self.final_layer_norm(states[-1])
        # the EOS token has the largest id; argmax over int32 ids as transformers does for ONNX
        pooled = last[torch.arange(b), input_ids.to(torch.int).argmax(dim=-1)]
        return last, pooled, states


class CLIPText(nn.Module):
    """CLIPTextModel -> (last_hidden_state, pooler_output); CLIPTextModelWithProjection -> (text_embeds,
    last_hidden_state); then hidden_states.0..N when hidden=True."""

    def __init__(self, c):
        super().__init__()
        self.text_model = CLIPTextTransformer(c)
        proj = c["architectures"][0].endswith("WithProjection")
        self.text_projection = nn.Linear(c["hidden_size"], c["projection_dim"], bias=False) if proj else None
        self.hidden = False

    def forward(self, input_ids):
        last, pooled, states = self.text_model(input_ids)
        out = [last, pooled] if self.text_projection is None else [self.text_projection(pooled), last]
        return tuple(out + (states if self.hidden else []))


def text_config(hidden, layers, heads, act, proj, arch, dtype="float32"):
    return {
        "_name_or_path": "", "architectures": [arch], "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0,
        "eos_token_id": 2, "hidden_act": act, "hidden_size": hidden, "initializer_factor": 1.0, "initializer_range": 0.02,
        "intermediate_size": 4 * hidden, "layer_norm_eps": 1e-05, "max_position_embeddings": 77, "model_type": "clip_text_model",
        "num_attention_heads": heads, "num_hidden_layers": layers, "pad_token_id": 1, "projection_dim": proj,
        "torch_dtype": dtype, "transformers_version": TRANSFORMERS_VERSION, "vocab_size": VOCAB_SIZE,
    }


# ----------------------------------------------------------------------------------------------------------------
# UNet2DConditionModel


class Timesteps(nn.Module):
    """diffusers get_timestep_embedding with flip_sin_to_cos=True, downscale_freq_shift=0: [cos, sin]."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, t):
        half = self.dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        args = t.float()[:, None] * freqs[None, :]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedding(nn.Module):
    """linear_1, SiLU, linear_2; with cond_dim (the UNet's time_cond_proj_dim, LCM) a bias-free cond_proj maps the
    condition to the input width and is added to the input before linear_1, as diffusers' TimestepEmbedding does."""

    def __init__(self, cin, dim, cond_dim=None):
        super().__init__()
        self.linear_1 = nn.Linear(cin, dim)
        self.cond_proj = nn.Linear(cond_dim, cin, bias=False) if cond_dim is not None else None
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x, condition=None):
        if condition is not None:
            x = x + self.cond_proj(condition)
        return self.linear_2(F.silu(self.linear_1(x)))


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
        return (self.conv_shortcut(x) if self.conv_shortcut is not None else x) + h


class Downsample2D(nn.Module):
    def __init__(self, ch, padding):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=padding)

    def forward(self, x):
        return self.conv(x if self.padding else F.pad(x, (0, 1, 0, 1)))


class Upsample2D(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Attention(nn.Module):
    """diffusers Attention: to_q/to_k/to_v (no bias in the UNet, bias in the VAE), to_out.0 (+ dropout)."""

    def __init__(self, dim, ctx_dim, heads, bias=False):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=bias)
        self.to_k = nn.Linear(ctx_dim, dim, bias=bias)
        self.to_v = nn.Linear(ctx_dim, dim, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])

    def forward(self, x, ctx):
        b, n, d = x.shape
        h = self.heads
        q = self.to_q(x).reshape(b, n, h, d // h).transpose(1, 2)
        k = self.to_k(ctx).reshape(b, ctx.shape[1], h, d // h).transpose(1, 2)
        v = self.to_v(ctx).reshape(b, ctx.shape[1], h, d // h).transpose(1, 2)
        w = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * (d // h) ** -0.5, dim=-1)
        return self.to_out[0](torch.matmul(w, v).transpose(1, 2).reshape(b, n, d))


class GEGLU(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x):
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, 4 * dim), nn.Dropout(0.0), nn.Linear(4 * dim, dim)])

    def forward(self, x):
        return self.net[2](self.net[0](x))


class BasicTransformerBlock(nn.Module):
    def __init__(self, ch, ctx_dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(ch)
        self.attn1 = Attention(ch, ch, heads)
        self.norm2 = nn.LayerNorm(ch)
        self.attn2 = Attention(ch, ctx_dim, heads)
        self.norm3 = nn.LayerNorm(ch)
        self.ff = FeedForward(ch)

    def forward(self, h, ctx):
        n1 = self.norm1(h)
        h = h + self.attn1(n1, n1)
        h = h + self.attn2(self.norm2(h), ctx)
        return h + self.ff(self.norm3(h))


class Transformer2DModel(nn.Module):
    def __init__(self, ch, ctx_dim, heads, layers, linear, groups):
        super().__init__()
        self.linear = linear
        self.norm = nn.GroupNorm(groups, ch, eps=1e-6)
        self.proj_in = nn.Linear(ch, ch) if linear else nn.Conv2d(ch, ch, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(ch, ctx_dim, heads) for _ in range(layers)])
        self.proj_out = nn.Linear(ch, ch) if linear else nn.Conv2d(ch, ch, 1)

    def forward(self, x, ctx):
        b, c, hh, ww = x.shape
        h = self.norm(x)
        if self.linear:
            h = self.proj_in(h.permute(0, 2, 3, 1).reshape(b, hh * ww, c))
        else:
            h = self.proj_in(h).permute(0, 2, 3, 1).reshape(b, hh * ww, c)
        for blk in self.transformer_blocks:
            h = blk(h, ctx)
        if self.linear:
            h = self.proj_out(h).reshape(b, hh, ww, c).permute(0, 3, 1, 2)
        else:
            h = self.proj_out(h.reshape(b, hh, ww, c).permute(0, 3, 1, 2))
        return x + h


class DownBlock(nn.Module):
    """CrossAttnDownBlock2D (attention=True) / DownBlock2D; also the VAE's DownEncoderBlock2D (temb 0, no attention)."""

    def __init__(self, cin, cout, n, temb, groups, eps, attn=None, down=None):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(cin if j == 0 else cout, cout, temb, groups, eps) for j in range(n)])
        self.attentions = nn.ModuleList([Transformer2DModel(cout, *attn, groups) for _ in range(n)]) if attn else None
        self.downsamplers = nn.ModuleList([Downsample2D(cout, down)]) if down is not None else None

    def forward(self, h, temb=None, ctx=None):
        skips = []
        for j, r in enumerate(self.resnets):
            h = r(h, temb)
            if self.attentions is not None:
                h = self.attentions[j](h, ctx)
            skips.append(h)
        if self.downsamplers is not None:
            h = self.downsamplers[0](h)
            skips.append(h)
        return h, skips


class UpBlock(nn.Module):
    """CrossAttnUpBlock2D / UpBlock2D (skip concats); the VAE's UpDecoderBlock2D when skips is None."""

    def __init__(self, cins, cout, temb, groups, eps, attn=None, up=False):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(ci, cout, temb, groups, eps) for ci in cins])
        self.attentions = nn.ModuleList([Transformer2DModel(cout, *attn, groups) for _ in cins]) if attn else None
        self.upsamplers = nn.ModuleList([Upsample2D(cout)]) if up else None

    def forward(self, h, skips=None, temb=None, ctx=None):
        for j, r in enumerate(self.resnets):
            h = r(h if skips is None else torch.cat([h, skips.pop()], 1), temb)
            if self.attentions is not None:
                h = self.attentions[j](h, ctx)
        return self.upsamplers[0](h) if self.upsamplers is not None else h


class UNetMidBlock2DCrossAttn(nn.Module):
    def __init__(self, ch, temb, groups, eps, attn):
        super().__init__()
        self.attentions = nn.ModuleList([Transformer2DModel(ch, *attn, groups)])
        self.resnets = nn.ModuleList([ResnetBlock2D(ch, ch, temb, groups, eps) for _ in range(2)])

    def forward(self, h, temb, ctx):
        return self.resnets[1](self.attentions[0](self.resnets[0](h, temb), ctx), temb)


def per_block(v, n):
    return list(v) if isinstance(v, (list, tuple)) else [v] * n


class UNet2DConditionModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        chs = c["block_out_channels"]
        nb = len(chs)
        g, eps, ctx = c["norm_num_groups"], c["norm_eps"], c["cross_attention_dim"]
        heads = per_block(c["attention_head_dim"], nb)  # diffusers reads attention_head_dim as the head count
        tl = per_block(c["transformer_layers_per_block"], nb)
        lin = c["use_linear_projection"]
        lpb = c["layers_per_block"]
        c0 = chs[0]
        temb = 4 * c0
        self.conv_in = nn.Conv2d(c["in_channels"], c0, 3, padding=1)
        self.time_proj = Timesteps(c0)
        self.time_embedding = TimestepEmbedding(c0, temb, c["time_cond_proj_dim"])
        self.text_time = c["addition_embed_type"] == "text_time"
        if self.text_time:
            self.add_time_proj = Timesteps(c["addition_time_embed_dim"])
            self.add_embedding = TimestepEmbedding(c["projection_class_embeddings_input_dim"], temb)
        attn = lambda i, rev=False: (ctx, heads[::-1][i] if rev else heads[i], tl[::-1][i] if rev else tl[i], lin)
        self.down_blocks = nn.ModuleList()
        skips = [c0]
        cin = c0
        for i, (kind, co) in enumerate(zip(c["down_block_types"], chs)):
            last = i == nb - 1
            self.down_blocks.append(DownBlock(cin, co, lpb, temb, g, eps, attn(i) if kind.startswith("CrossAttn") else None,
                                              None if last else c["downsample_padding"]))
            skips += [co] * lpb + ([] if last else [co])
            cin = co
        self.mid_block = UNetMidBlock2DCrossAttn(chs[-1], temb, g, eps, attn(nb - 1))
        self.up_blocks = nn.ModuleList()
        prev = chs[-1]
        for i, (kind, co) in enumerate(zip(c["up_block_types"], chs[::-1])):
            cins = [(prev if j == 0 else co) + skips.pop() for j in range(lpb + 1)]
            self.up_blocks.append(UpBlock(cins, co, temb, g, eps, attn(i, True) if kind.startswith("CrossAttn") else None, i < nb - 1))
            prev = co
        self.conv_norm_out = nn.GroupNorm(g, c0, eps=eps)
        self.conv_out = nn.Conv2d(c0, c["out_channels"], 3, padding=1)

    def forward(self, sample, timestep, encoder_hidden_states, text_embeds=None, time_ids=None, timestep_cond=None):
        ctx = encoder_hidden_states
        t = timestep[None] if timestep.dim() == 0 else timestep
        t = t.expand(sample.shape[0])
        emb = self.time_embedding(self.time_proj(t).to(sample.dtype), timestep_cond)
        if self.text_time:
            tf = self.add_time_proj(time_ids.flatten()).to(sample.dtype).reshape(text_embeds.shape[0], -1)
            emb = emb + self.add_embedding(torch.cat([text_embeds, tf], dim=-1))
        h = self.conv_in(sample)
        skips = [h]
        for blk in self.down_blocks:
            h, s = blk(h, emb, ctx)
            skips += s
        h = self.mid_block(h, emb, ctx)
        for blk in self.up_blocks:
            n = len(blk.resnets)
            h = blk(h, skips[-n:], emb, ctx)
            del skips[-n:]
        return self.conv_out(F.silu(self.conv_norm_out(h)))


def unet_config(**over):
    c = {
        "_class_name": "UNet2DConditionModel", "_diffusers_version": DIFFUSERS_VERSION, "act_fn": "silu",
        "addition_embed_type": None, "addition_embed_type_num_heads": 64, "addition_time_embed_dim": None,
        "attention_head_dim": 2, "attention_type": "default", "block_out_channels": [4, 8, 16, 16],
        "center_input_sample": False, "class_embed_type": None, "class_embeddings_concat": False, "conv_in_kernel": 3,
        "conv_out_kernel": 3, "cross_attention_dim": 32, "cross_attention_norm": None,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "downsample_padding": 1, "dropout": 0.0, "dual_cross_attention": False, "encoder_hid_dim": None,
        "encoder_hid_dim_type": None, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
        "mid_block_only_cross_attention": None, "mid_block_scale_factor": 1, "mid_block_type": "UNetMidBlock2DCrossAttn",
        "norm_eps": 1e-05, "norm_num_groups": 2, "num_attention_heads": None, "num_class_embeds": None,
        "only_cross_attention": False, "out_channels": 4, "projection_class_embeddings_input_dim": None,
        "resnet_out_scale_factor": 1.0, "resnet_skip_time_act": False, "resnet_time_scale_shift": "default",
        "reverse_transformer_layers_per_block": None, "sample_size": 16, "time_cond_proj_dim": None,
        "time_embedding_act_fn": None, "time_embedding_dim": None, "time_embedding_type": "positional",
        "timestep_post_act": None, "transformer_layers_per_block": 1,
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        "upcast_attention": False, "use_linear_projection": False,
    }
    c.update(over)
    return c


# ----------------------------------------------------------------------------------------------------------------
# UNet2DModel (unconditional, pixel space: DDPMPipeline / DDIMPipeline)


class SelfAttention2D(nn.Module):
    """diffusers Attention as AttnDownBlock2D, AttnUpBlock2D and UNetMidBlock2D build it (the former attention
    block): group_norm, biased to_q/to_k/to_v, to_out.0 (+ dropout), residual connection; heads = channels //
    attention_head_dim, scaled by head_dim^-0.5. Takes (and ignores) a context so DownBlock / UpBlock can call it."""

    def __init__(self, ch, head_dim, groups, eps):
        super().__init__()
        self.heads = ch // head_dim
        self.group_norm = nn.GroupNorm(groups, ch, eps=eps)
        self.to_q, self.to_k, self.to_v = (nn.Linear(ch, ch) for _ in range(3))
        self.to_out = nn.ModuleList([nn.Linear(ch, ch), nn.Dropout(0.0)])

    def forward(self, x, ctx=None):
        b, c, hh, ww = x.shape
        h = self.heads
        t = self.group_norm(x).reshape(b, c, hh * ww).transpose(1, 2)
        split = lambda y: y.reshape(b, hh * ww, h, c // h).transpose(1, 2)
        q, k, v = split(self.to_q(t)), split(self.to_k(t)), split(self.to_v(t))
        w = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * (c // h) ** -0.5, dim=-1)
        o = self.to_out[0](torch.matmul(w, v).transpose(1, 2).reshape(b, hh * ww, c))
        return x + o.transpose(1, 2).reshape(b, c, hh, ww)


class UNetMidBlock2DTemb(nn.Module):
    """UNetMidBlock2D of UNet2DModel: resnet, attention, resnet, with the time embedding."""

    def __init__(self, ch, temb, groups, eps, head_dim):
        super().__init__()
        self.attentions = nn.ModuleList([SelfAttention2D(ch, head_dim, groups, eps)])
        self.resnets = nn.ModuleList([ResnetBlock2D(ch, ch, temb, groups, eps) for _ in range(2)])

    def forward(self, h, temb):
        return self.resnets[1](self.attentions[0](self.resnets[0](h, temb)), temb)


class UNet2DModel(nn.Module):
    """diffusers UNet2DModel with time_embedding_type "positional", no class embedding: conv_in; Timesteps +
    TimestepEmbedding; DownBlock2D / AttnDownBlock2D (layers_per_block resnets, an attention after each resnet in
    Attn blocks, stride-2 conv downsamplers but on the last); UNetMidBlock2D; UpBlock2D / AttnUpBlock2D
    (layers_per_block + 1 resnets on skip concats, nearest x2 + conv upsamplers but on the last); GroupNorm, SiLU,
    conv_out. The timestep is multiplied by ones(batch) as diffusers does, so a length-1 or a [batch] timestep works."""

    def __init__(self, c):
        super().__init__()
        chs = c["block_out_channels"]
        nb = len(chs)
        g, eps, lpb, hd = c["norm_num_groups"], c["norm_eps"], c["layers_per_block"], c["attention_head_dim"]
        c0 = chs[0]
        temb = 4 * c0
        self.conv_in = nn.Conv2d(c["in_channels"], c0, 3, padding=1)
        self.time_proj = Timesteps(c0)
        self.time_embedding = TimestepEmbedding(c0, temb)
        attns = lambda ch, n: nn.ModuleList([SelfAttention2D(ch, hd, g, eps) for _ in range(n)])
        self.down_blocks = nn.ModuleList()
        skips = [c0]
        cin = c0
        for i, (kind, co) in enumerate(zip(c["down_block_types"], chs)):
            last = i == nb - 1
            blk = DownBlock(cin, co, lpb, temb, g, eps, None, None if last else c["downsample_padding"])
            if kind == "AttnDownBlock2D":
                blk.attentions = attns(co, lpb)
            self.down_blocks.append(blk)
            skips += [co] * lpb + ([] if last else [co])
            cin = co
        self.mid_block = UNetMidBlock2DTemb(chs[-1], temb, g, eps, hd)
        self.up_blocks = nn.ModuleList()
        prev = chs[-1]
        for i, (kind, co) in enumerate(zip(c["up_block_types"], chs[::-1])):
            cins = [(prev if j == 0 else co) + skips.pop() for j in range(lpb + 1)]
            blk = UpBlock(cins, co, temb, g, eps, None, i < nb - 1)
            if kind == "AttnUpBlock2D":
                blk.attentions = attns(co, lpb + 1)
            self.up_blocks.append(blk)
            prev = co
        self.conv_norm_out = nn.GroupNorm(g, c0, eps=eps)
        self.conv_out = nn.Conv2d(c0, c["out_channels"], 3, padding=1)

    def forward(self, sample, timestep):
        t = timestep[None] if timestep.dim() == 0 else timestep
        t = t * torch.ones(sample.shape[0], dtype=t.dtype)
        emb = self.time_embedding(self.time_proj(t))
        h = self.conv_in(sample)
        skips = [h]
        for blk in self.down_blocks:
            h, s = blk(h, emb)
            skips += s
        h = self.mid_block(h, emb)
        for blk in self.up_blocks:
            n = len(blk.resnets)
            h = blk(h, skips[-n:], emb)
            del skips[-n:]
        return self.conv_out(F.silu(self.conv_norm_out(h)))


def unet2d_config(**over):
    """UNet2DModel's config.json as diffusers 0.31 save_config writes it (every __init__ argument)."""
    c = {
        "_class_name": "UNet2DModel", "_diffusers_version": DIFFUSERS_VERSION, "act_fn": "silu", "add_attention": True,
        "attention_head_dim": 8, "attn_norm_num_groups": None, "block_out_channels": [8, 16], "center_input_sample": False,
        "class_embed_type": None, "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "downsample_padding": 1,
        "downsample_type": "conv", "dropout": 0.0, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 3,
        "layers_per_block": 1, "mid_block_scale_factor": 1, "mid_block_type": "UNetMidBlock2D", "norm_eps": 1e-05,
        "norm_num_groups": 4, "num_class_embeds": None, "num_train_timesteps": None, "out_channels": 3,
        "resnet_time_scale_shift": "default", "sample_size": 32, "time_embedding_dim": None,
        "time_embedding_type": "positional", "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "upsample_type": "conv",
    }
    c.update(over)
    return c


# ----------------------------------------------------------------------------------------------------------------
# AutoencoderKL


class VaeAttention(nn.Module):
    """The VAE mid block's single-head Attention (group_norm, biased projections, residual)."""

    def __init__(self, ch, groups):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, ch, eps=1e-6)
        self.to_q, self.to_k, self.to_v = (nn.Linear(ch, ch) for _ in range(3))
        self.to_out = nn.ModuleList([nn.Linear(ch, ch), nn.Dropout(0.0)])

    def forward(self, x):
        b, c, hh, ww = x.shape
        h = self.group_norm(x).reshape(b, c, hh * ww).transpose(1, 2)
        w = torch.softmax(torch.matmul(self.to_q(h), self.to_k(h).transpose(-1, -2)) * c ** -0.5, dim=-1)
        h = self.to_out[0](torch.matmul(w, self.to_v(h)))
        return x + h.transpose(1, 2).reshape(b, c, hh, ww)


class UNetMidBlock2D(nn.Module):
    def __init__(self, ch, g):
        super().__init__()
        self.attentions = nn.ModuleList([VaeAttention(ch, g)])
        self.resnets = nn.ModuleList([ResnetBlock2D(ch, ch, 0, g, 1e-6) for _ in range(2)])

    def forward(self, x):
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        chs, g, lpb = c["block_out_channels"], c["norm_num_groups"], c["layers_per_block"]
        self.conv_in = nn.Conv2d(c["in_channels"], chs[0], 3, padding=1)
        self.down_blocks = nn.ModuleList(
            [DownBlock(chs[max(i - 1, 0)], co, lpb, 0, g, 1e-6, None, 0 if i < len(chs) - 1 else None) for i, co in enumerate(chs)])
        self.mid_block = UNetMidBlock2D(chs[-1], g)
        self.conv_norm_out = nn.GroupNorm(g, chs[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(chs[-1], 2 * c["latent_channels"], 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for blk in self.down_blocks:
            h, _ = blk(h)
        return self.conv_out(F.silu(self.conv_norm_out(self.mid_block(h))))


class Decoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        chs, g, lpb = c["block_out_channels"][::-1], c["norm_num_groups"], c["layers_per_block"]
        self.conv_in = nn.Conv2d(c["latent_channels"], chs[0], 3, padding=1)
        self.mid_block = UNetMidBlock2D(chs[0], g)
        self.up_blocks = nn.ModuleList(
            [UpBlock([chs[max(i - 1, 0)]] + [co] * lpb, co, 0, g, 1e-6, None, i < len(chs) - 1) for i, co in enumerate(chs)])
        self.conv_norm_out = nn.GroupNorm(g, chs[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(chs[-1], c["out_channels"], 3, padding=1)

    def forward(self, z):
        h = self.mid_block(self.conv_in(z))
        for blk in self.up_blocks:
            h = blk(h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


class AutoencoderKL(nn.Module):
    """forward as the exporters patch it: "decode" (post_quant_conv + decoder), "parameters" (Optimum's
    vae_encoder: encoder + quant_conv = mean || logvar) or "sample" (the legacy script's vae_encoder:
    latent_dist.sample() = mean + std * noise)."""

    def __init__(self, c):
        super().__init__()
        lc = c["latent_channels"]
        self.encoder = Encoder(c)
        self.decoder = Decoder(c)
        self.quant_conv = nn.Conv2d(2 * lc, 2 * lc, 1)
        self.post_quant_conv = nn.Conv2d(lc, lc, 1)
        self.mode = "decode"

    def forward(self, x):
        if self.mode == "decode":
            return self.decoder(self.post_quant_conv(x))
        moments = self.quant_conv(self.encoder(x))
        if self.mode == "parameters":
            return moments
        mean, logvar = torch.chunk(moments, 2, dim=1)
        std = torch.exp(0.5 * torch.clamp(logvar, -30.0, 20.0))
        return mean + std * torch.randn_like(mean)


def as_mode(vae, mode):
    vae.mode = mode
    return vae


def vae_config(scaling, sample_size, **over):
    c = {
        "_class_name": "AutoencoderKL", "_diffusers_version": DIFFUSERS_VERSION, "act_fn": "silu",
        "block_out_channels": [4, 4, 8, 8], "down_block_types": ["DownEncoderBlock2D"] * 4, "force_upcast": True,
        "in_channels": 3, "latent_channels": 4, "latents_mean": None, "latents_std": None, "layers_per_block": 2,
        "mid_block_add_attention": True, "norm_num_groups": 2, "out_channels": 3, "sample_size": sample_size,
        "scaling_factor": scaling, "shift_factor": None, "up_block_types": ["UpDecoderBlock2D"] * 4,
        "use_post_quant_conv": True, "use_quant_conv": True,
    }
    c.update(over)
    return c


# ----------------------------------------------------------------------------------------------------------------
# export helpers


def export(module, args, path, inputs, outputs, axes, opset, external=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(module, args, path, input_names=inputs, output_names=outputs, dynamic_axes=axes,
                          opset_version=opset, do_constant_folding=True)
    m = onnx.load(path)
    m.producer_name, m.producer_version = "pytorch", torch.__version__.split("a")[0].split("+")[0]
    shorten_value_names(m)
    onnx.checker.check_model(m)
    save(m, path, external)


def shorten_value_names(m):
    """Intermediate values get short names (v0, v1, ...) in node order: torch names each one after its scope
    (`/down_blocks.0/attentions.0/.../MatMul_output_0`), which is over half of a small UNet's file. Node names,
    initializer names and the graph's input and output names stay the exporter's."""
    g = m.graph
    fixed = {v.name for v in g.input} | {v.name for v in g.output} | {t.name for t in g.initializer}
    new = {}
    for n in g.node:
        for k, o in enumerate(n.output):
            if o and o not in fixed:
                new.setdefault(o, f"v{len(new)}")
                n.output[k] = new[o]
    for n in g.node:
        for k, x in enumerate(n.input):
            if x in new:
                n.input[k] = new[x]
    for vi in g.value_info:
        if vi.name in new:
            vi.name = new[vi.name]


def save(m, path, external=None):
    for f in os.listdir(os.path.dirname(path)):
        if f != "config.json":
            os.remove(os.path.join(os.path.dirname(path), f))
    if external:
        onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True, location=external, size_threshold=1024)
    else:
        onnx.save_model(m, path)


FP16_MAX = 65504.0


def to_fp16(arr):
    return np.clip(arr, -FP16_MAX, FP16_MAX).astype(np.float16)


def convert_fp16(model, keep_fp32_prefix=()):
    """float32 -> float16 for a whole graph, inputs and outputs included (what an export of a float16 model
    gives). Nodes whose names start with one of keep_fp32_prefix stay float32, with Casts at their boundary (as
    diffusers' timestep projection computes in float32). Resize scales/roi stay float32 (the op requires it)."""
    model = onnx.shape_inference.infer_shapes(model)
    g = model.graph
    F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16
    etype = {}
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        etype[vi.name] = vi.type.tensor_type.elem_type
    for t in g.initializer:
        etype[t.name] = t.data_type
    nodes = [copy.deepcopy(n) for n in g.node]  # standalone messages: ids stay valid while they live
    for n in nodes:
        if n.op_type == "Constant":
            etype[n.output[0]] = n.attribute[0].t.data_type
    consumers = defaultdict(list)
    for n in nodes:
        for i in n.input:
            consumers[i].append(n)
    kept = {id(n) for n in nodes if keep_fp32_prefix and n.name.startswith(tuple(keep_fp32_prefix))}
    must32 = set()  # values that stay float32
    for n in nodes:
        if n.op_type == "Resize":
            must32.update(x for x in n.input[1:3] if x)
        if id(n) in kept:
            must32.update(n.output)
    produced_by = {o: n for n in nodes for o in n.output}
    init_names = {t.name for t in g.initializer}
    for name in list(etype):
        users = consumers.get(name, [])
        constant = name in init_names or (name in produced_by and produced_by[name].op_type == "Constant")
        if users and constant and all(id(u) in kept for u in users):
            must32.add(name)
            if name in produced_by:
                kept.add(id(produced_by[name]))
    for t in g.initializer:
        if t.data_type == F32 and t.name not in must32:
            t.CopyFrom(numpy_helper.from_array(to_fp16(numpy_helper.to_array(t)), t.name))
    graph_outputs = {v.name for v in g.output}
    new_nodes = []
    for n in nodes:
        if id(n) not in kept:
            for a in n.attribute:
                if a.name == "value" and a.t.data_type == F32 and not set(n.output) & must32:
                    a.t.CopyFrom(numpy_helper.from_array(to_fp16(numpy_helper.to_array(a.t)), a.t.name))
                if n.op_type == "Cast" and a.name == "to" and a.i == F32:
                    a.i = F16
            new_nodes.append(n)
            continue
        for k, x in enumerate(n.input):
            if x and etype.get(x) == F32 and x not in must32 and n.op_type != "Cast":  # a Cast takes any type
                new_nodes.append(helper.make_node("Cast", [x], [x + "_fp32"], name=n.name + f"_cast_in{k}", to=F32))
                n.input[k] = x + "_fp32"
        new_nodes.append(n)
        for k, o in enumerate(list(n.output)):
            if etype.get(o) != F32:
                continue
            if any(id(u) not in kept for u in consumers.get(o, [])) or o in graph_outputs:
                for u in consumers.get(o, []):
                    if id(u) in kept:
                        u.input[:] = [o + "_fp32" if x == o else x for x in u.input]
                n.output[k] = o + "_fp32"
                new_nodes.append(helper.make_node("Cast", [o + "_fp32"], [o], name=n.name + "_cast_out", to=F16))
    del g.node[:]
    g.node.extend(new_nodes)
    for v in list(g.input) + list(g.output):
        if v.type.tensor_type.elem_type == F32:
            v.type.tensor_type.elem_type = F16
    del g.value_info[:]
    onnx.checker.check_model(model)
    return model


# ----------------------------------------------------------------------------------------------------------------
# pipelines

SD15_TEXT = dict(hidden=32, layers=2, heads=2, act="quick_gelu", proj=32, arch="CLIPTextModel")
PNDM = {
    "_class_name": "PNDMScheduler", "_diffusers_version": DIFFUSERS_VERSION, "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False, "num_train_timesteps": 1000,
    "prediction_type": "epsilon", "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
    "timestep_spacing": "leading", "trained_betas": None,
}
EULER = {
    "_class_name": "EulerDiscreteScheduler", "_diffusers_version": DIFFUSERS_VERSION, "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False, "final_sigmas_type": "zero",
    "interpolation_type": "linear", "num_train_timesteps": 1000, "prediction_type": "epsilon",
    "rescale_betas_zero_snr": False, "sample_max_value": 1.0, "set_alpha_to_one": False, "sigma_max": None,
    "sigma_min": None, "skip_prk_steps": True, "steps_offset": 1, "timestep_spacing": "leading",
    "timestep_type": "discrete", "trained_betas": None, "use_beta_sigmas": False, "use_exponential_sigmas": False,
    "use_karras_sigmas": False,
}


def seeded(seed, build):
    torch.manual_seed(seed)
    return build().eval()


def sample_ids(batch=2):
    ids = torch.full((batch, 77), VOCAB[EOS], dtype=torch.long)
    ids[:, 0] = VOCAB[BOS]
    ids[:, 1:4] = torch.tensor([VOCAB["a</w>"], VOCAB["photo</w>"], VOCAB["of</w>"]])
    ids[:, 4] = VOCAB["cat</w>"]
    return ids


def sd15_models(seed, **unet_over):
    tc = text_config(**SD15_TEXT)
    uc = unet_config(**unet_over)
    vc = vae_config(0.18215, 128)
    te = seeded(seed, lambda: CLIPText(tc))
    unet = seeded(seed + 1, lambda: UNet2DConditionModel(uc))
    vae = seeded(seed + 2, lambda: AutoencoderKL(vc))
    return tc, uc, vc, te, unet, vae


def sd15_index(class_name, legacy):
    if legacy:
        m = ["diffusers", "OnnxRuntimeModel"]
        return {
            "_class_name": "OnnxStableDiffusionPipeline", "_diffusers_version": DIFFUSERS_VERSION,
            "feature_extractor": [None, None], "requires_safety_checker": False, "safety_checker": [None, None],
            "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": m, "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": m, "vae_decoder": m, "vae_encoder": m,
        }
    return {
        "_class_name": class_name, "_diffusers_version": DIFFUSERS_VERSION, "feature_extractor": [None, None],
        "image_encoder": [None, None], "requires_safety_checker": False, "safety_checker": [None, None],
        "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }


OPT_TEXT_AXES = {"input_ids": {0: "batch_size", 1: "sequence_length"}, "last_hidden_state": {0: "batch_size", 1: "sequence_length"},
                 "pooler_output": {0: "batch_size"}}
OPT_UNET_AXES = {"sample": {0: "batch_size", 2: "height", 3: "width"}, "encoder_hidden_states": {0: "batch_size", 1: "sequence_length"},
                 "out_sample": {0: "batch_size", 2: "height", 3: "width"}}
OPT_DEC_AXES = {"latent_sample": {0: "batch_size", 2: "latent_height", 3: "latent_width"},
                "sample": {0: "batch_size", 2: "latent_height * 8", 3: "latent_width * 8"}}
OPT_ENC_AXES = {"sample": {0: "batch_size", 2: "sample_height", 3: "sample_width"},
                "latent_parameters": {0: "batch_size", 2: "sample_height / 8", 3: "sample_width / 8"}}


def make_sd15_optimum(out, seed, fp16=False, lcm=False, unet_over=None):
    """fp16: exported in float32 here (PyTorch 1.13 has no float16 CPU kernels to trace with), then converted.
    lcm: LatentConsistencyModelPipeline (LCMScheduler; the unet has time_cond_proj_dim and a timestep_cond input).
    unet_over: unet config fields to change (the bench's wider unets: block_out_channels, attention_head_dim,
    norm_num_groups, sample_size)."""
    over = dict(unet_over or {})
    if lcm:
        over["time_cond_proj_dim"] = LCM_COND_DIM
    tc, uc, vc, te, unet, vae = sd15_models(seed, **over)
    dtype = "float16" if fp16 else "float32"
    if fp16:
        tc["torch_dtype"] = "float16"
    opset = 17
    if lcm:
        write_json(os.path.join(out, "model_index.json"), lcm_index())
        write_json(os.path.join(out, "scheduler", "scheduler_config.json"), LCM)
    else:
        write_json(os.path.join(out, "model_index.json"), sd15_index("StableDiffusionPipeline", False))
        write_json(os.path.join(out, "scheduler", "scheduler_config.json"), PNDM)
    write_tokenizer(os.path.join(out, "tokenizer"))
    write_json(os.path.join(out, "text_encoder", "config.json"), tc)
    write_json(os.path.join(out, "unet", "config.json"), uc)
    write_json(os.path.join(out, "vae_decoder", "config.json"), vc)
    write_json(os.path.join(out, "vae_encoder", "config.json"), vc)
    lat = torch.randn(2, 4, 16, 16)
    ctx = torch.randn(2, 77, tc["hidden_size"])
    unet_args, unet_ins, unet_axes = (lat, torch.tensor(981.0), ctx), ["sample", "timestep", "encoder_hidden_states"], OPT_UNET_AXES
    if lcm:
        # Optimum's UNetOnnxConfig: timestep_cond {0: batch_size} after the other inputs (a trailing dict = keyword args)
        w = torch.from_numpy(guidance_embedding(8.5, LCM_COND_DIM, np.float32)).expand(2, LCM_COND_DIM)
        unet_args, unet_ins = unet_args + ({"timestep_cond": w},), unet_ins + ["timestep_cond"]
        unet_axes = {**OPT_UNET_AXES, "timestep_cond": {0: "batch_size"}}
    parts = [
        ("text_encoder", lambda: te, (sample_ids(),), ["input_ids"], ["last_hidden_state", "pooler_output"], OPT_TEXT_AXES, ()),
        ("unet", lambda: unet, unet_args, unet_ins, ["out_sample"], unet_axes, ("/time_proj/",)),
        ("vae_decoder", lambda: as_mode(vae, "decode"), (lat,), ["latent_sample"], ["sample"], OPT_DEC_AXES, ()),
        ("vae_encoder", lambda: as_mode(vae, "parameters"), (torch.randn(1, 3, 128, 128),), ["sample"], ["latent_parameters"], OPT_ENC_AXES, ()),
    ]
    for name, mod, args, ins, outs, axes, keep in parts:
        path = os.path.join(out, name, "model.onnx")
        export(mod(), args, path, ins, outs, axes, opset)
        if fp16:
            save(convert_fp16(onnx.load(path), keep), path)
    return dtype


# LatentConsistencyModelPipeline: a UNet2DConditionModel with time_cond_proj_dim (LCM-Dreamshaper-v7: 256) and
# LCMScheduler with LCM-Dreamshaper-v7's schedule, written with every field LCMScheduler.save_config writes in 0.31
LCM_COND_DIM = 16
LCM = {
    "_class_name": "LCMScheduler", "_diffusers_version": DIFFUSERS_VERSION, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "beta_start": 0.00085, "clip_sample": False, "clip_sample_range": 1.0, "dynamic_thresholding_ratio": 0.995,
    "num_train_timesteps": 1000, "original_inference_steps": 50, "prediction_type": "epsilon", "rescale_betas_zero_snr": False,
    "sample_max_value": 1.0, "set_alpha_to_one": True, "steps_offset": 1, "thresholding": False, "timestep_scaling": 10.0,
    "timestep_spacing": "leading", "trained_betas": None,
}


def lcm_index():
    """LatentConsistencyModelPipeline's config: its registered modules (safety checker, feature extractor and image
    encoder absent: [null, null]) and requires_safety_checker at its __init__ default."""
    return {
        "_class_name": "LatentConsistencyModelPipeline", "_diffusers_version": DIFFUSERS_VERSION, "feature_extractor": [None, None],
        "image_encoder": [None, None], "requires_safety_checker": True, "safety_checker": [None, None],
        "scheduler": ["diffusers", "LCMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }


def guidance_embedding(guidance, dim, dtype):
    """diffusers' LatentConsistencyModelPipeline.get_guidance_scale_embedding for one w = guidance - 1, in numpy:
    w * 1000 times exp(-k * ln(10000) / (half - 1)), k < half = dim // 2, then [sin, cos] (a zero appended for an
    odd dim). dtype float32 follows torch's float32 arithmetic step by step; float64 is the exact value."""
    w = np.array([guidance - 1], dtype=dtype) * dtype(1000.0)
    half = dim // 2
    step = np.log(np.array(10000.0, dtype=dtype)) / dtype(half - 1)
    freqs = np.exp(np.arange(half, dtype=dtype) * -step)
    args = w[:, None] * freqs[None, :]
    emb = np.concatenate([np.sin(args), np.cos(args)], axis=1)
    if dim % 2 == 1:
        emb = np.pad(emb, ((0, 0), (0, 1)))
    return emb[0]


LCM_REF_GUIDANCE = [8.5, 1.0, 2.0, 0.0, 3.25]


def write_lcm_reference(path):
    """Reference guidance embeddings for the lcm-optimum tests, beside the fixture (not inside the pipeline folder)."""
    rows = []
    for g in LCM_REF_GUIDANCE:
        exact = guidance_embedding(g, LCM_COND_DIM, np.float64)
        torch32 = guidance_embedding(g, LCM_COND_DIM, np.float32).astype(np.float64)
        rows.append({"guidance": g, "embedding": [float(v) for v in exact],
                     "float32_max_abs_diff": float(np.abs(exact - torch32).max())})
    write_json(path, {
        "about": "diffusers' get_guidance_scale_embedding(w = guidance - 1, embedding_dim = time_cond_proj_dim) computed in "
                 "float64 by tools/make_sd_fixtures.py (numpy, from the formula); float32_max_abs_diff: how far torch's "
                 "float32 arithmetic lands from these values",
        "time_cond_proj_dim": LCM_COND_DIM, "default_guidance": 8.5, "cases": rows,
    })


def make_sd15_legacy(out, seed, timestep_dtype):
    tc, uc, vc, te, unet, vae = sd15_models(seed)
    opset = 14
    write_json(os.path.join(out, "model_index.json"), sd15_index(None, True))
    write_json(os.path.join(out, "scheduler", "scheduler_config.json"), PNDM)
    write_tokenizer(os.path.join(out, "tokenizer"), style="legacy")
    lat = torch.randn(2, 4, 16, 16)
    ctx = torch.randn(2, 77, tc["hidden_size"])
    t = torch.tensor([981, 981]) if timestep_dtype == "int64" else torch.tensor([981.0, 981.0])
    img_axes = {0: "batch", 1: "channels", 2: "height", 3: "width"}
    export(te, (sample_ids().to(torch.int32),), os.path.join(out, "text_encoder", "model.onnx"), ["input_ids"],
           ["last_hidden_state", "pooler_output"], {"input_ids": {0: "batch", 1: "sequence"}}, opset)
    export(unet, (lat, t, ctx), os.path.join(out, "unet", "model.onnx"), ["sample", "timestep", "encoder_hidden_states"],
           ["out_sample"], {"sample": img_axes, "timestep": {0: "batch"}, "encoder_hidden_states": {0: "batch", 1: "sequence"}},
           opset, external="weights.pb")
    export(as_mode(vae, "sample"), (torch.randn(1, 3, 128, 128),), os.path.join(out, "vae_encoder", "model.onnx"),
           ["sample"], ["latent_sample"], {"sample": img_axes}, opset)
    export(as_mode(vae, "decode"), (torch.randn(1, 4, 16, 16),), os.path.join(out, "vae_decoder", "model.onnx"),
           ["latent_sample"], ["sample"], {"latent_sample": img_axes}, opset)


def make_sdxl_optimum(out, seed):
    tc1 = text_config(32, 2, 2, "quick_gelu", 32, "CLIPTextModel")
    tc2 = text_config(40, 2, 2, "gelu", 40, "CLIPTextModelWithProjection")
    time_dim = 8
    uc = unet_config(
        addition_embed_type="text_time", addition_time_embed_dim=time_dim, attention_head_dim=[1, 2, 4],
        block_out_channels=[4, 8, 16], cross_attention_dim=tc1["hidden_size"] + tc2["hidden_size"],
        down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        projection_class_embeddings_input_dim=tc2["projection_dim"] + 6 * time_dim, sample_size=16,
        transformer_layers_per_block=[1, 1, 2], up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        use_linear_projection=True)
    vc = vae_config(0.13025, 128)
    te1 = seeded(seed, lambda: CLIPText(tc1))
    te2 = seeded(seed + 1, lambda: CLIPText(tc2))
    te1.hidden = te2.hidden = True
    unet = seeded(seed + 2, lambda: UNet2DConditionModel(uc))
    vae = seeded(seed + 3, lambda: AutoencoderKL(vc))
    write_json(os.path.join(out, "model_index.json"), {
        "_class_name": "StableDiffusionXLPipeline", "_diffusers_version": DIFFUSERS_VERSION, "feature_extractor": [None, None],
        "force_zeros_for_empty_prompt": True, "image_encoder": [None, None], "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"], "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
    })
    write_json(os.path.join(out, "scheduler", "scheduler_config.json"), EULER)
    write_tokenizer(os.path.join(out, "tokenizer"))
    write_tokenizer(os.path.join(out, "tokenizer_2"), pad="!")
    write_json(os.path.join(out, "text_encoder", "config.json"), tc1)
    write_json(os.path.join(out, "text_encoder_2", "config.json"), tc2)
    write_json(os.path.join(out, "unet", "config.json"), uc)
    write_json(os.path.join(out, "vae_decoder", "config.json"), vc)
    write_json(os.path.join(out, "vae_encoder", "config.json"), vc)
    opset = 17
    hid = lambda c: [f"hidden_states.{i}" for i in range(c["num_hidden_layers"] + 1)]
    seq = {0: "batch_size", 1: "sequence_length"}
    ax1 = {**OPT_TEXT_AXES, **{h: seq for h in hid(tc1)}}
    export(te1, (sample_ids(),), os.path.join(out, "text_encoder", "model.onnx"), ["input_ids"],
           ["last_hidden_state", "pooler_output"] + hid(tc1), ax1, opset)
    # Optimum declares text_embeds {0: batch_size, 1: sequence_length} (sic) for CLIPTextModelWithProjection
    ax2 = {"input_ids": seq, "text_embeds": seq, "last_hidden_state": seq, **{h: seq for h in hid(tc2)}}
    export(te2, (sample_ids(),), os.path.join(out, "text_encoder_2", "model.onnx"), ["input_ids"],
           ["text_embeds", "last_hidden_state"] + hid(tc2), ax2, opset)
    lat = torch.randn(2, 4, 16, 16)
    args = (lat, torch.tensor(999.0), torch.randn(2, 77, uc["cross_attention_dim"]), torch.randn(2, tc2["projection_dim"]),
            torch.tensor([[128.0, 128.0, 0.0, 0.0, 128.0, 128.0]] * 2))
    axes = {**OPT_UNET_AXES, "text_embeds": {0: "batch_size"}, "time_ids": {0: "batch_size"}}
    export(unet, args, os.path.join(out, "unet", "model.onnx"), ["sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"],
           ["out_sample"], axes, opset, external="model.onnx_data")
    export(as_mode(vae, "decode"), (lat,), os.path.join(out, "vae_decoder", "model.onnx"), ["latent_sample"], ["sample"], OPT_DEC_AXES, opset)
    export(as_mode(vae, "parameters"), (torch.randn(1, 3, 128, 128),), os.path.join(out, "vae_encoder", "model.onnx"),
           ["sample"], ["latent_parameters"], OPT_ENC_AXES, opset)


def randomized(build):
    """A module from build() with every all-zero Linear drawn at random (std 0.05): the adaLN-Zero initialisation of
    a DiT would make a random-weight fixture's output 0."""
    m = build()
    for mod in m.modules():
        if isinstance(mod, nn.Linear) and float(mod.weight.abs().sum()) == 0.0:
            nn.init.normal_(mod.weight, std=0.05)
            nn.init.normal_(mod.bias, std=0.05)
    return m


def export_vae_halves(out, vae, lat, opset):
    """vae_decoder/ (post_quant_conv + decoder) and vae_encoder/ (encoder + quant_conv -> mean || logvar), Optimum's."""
    export(as_mode(vae, "decode"), (lat,), os.path.join(out, "vae_decoder", "model.onnx"), ["latent_sample"], ["sample"], OPT_DEC_AXES, opset)
    export(as_mode(vae, "parameters"), (torch.randn(1, 3, 128, 128),), os.path.join(out, "vae_encoder", "model.onnx"),
           ["sample"], ["latent_parameters"], OPT_ENC_AXES, opset)


FLOW_SD3 = {  # FlowMatchEulerDiscreteScheduler as SD3 pipelines save it (diffusers 0.31 fields), shift 3.0
    "_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": DIFFUSERS_VERSION, "base_image_seq_len": 256,
    "base_shift": 0.5, "invert_sigmas": False, "max_image_seq_len": 4096, "max_shift": 1.15, "num_train_timesteps": 1000,
    "shift": 3.0, "shift_terminal": None, "use_beta_sigmas": False, "use_dynamic_shifting": False,
    "use_exponential_sigmas": False, "use_karras_sigmas": False,
}


def make_sd3_optimum(out, seed, over=None):
    """StableDiffusion3Pipeline as Optimum writes it, without the T5 encoder (diffusers' text_encoder_3=None: 256 zero
    tokens in its place): tokenizer/ + text_encoder/ (CLIPTextModelWithProjection, quick_gelu) and tokenizer_2/ (pad
    "!") + text_encoder_2/ (CLIPTextModelWithProjection, gelu), both with text_embeds, last_hidden_state and
    hidden_states.0..N; transformer/ (SD3Transformer2DModel conventions: hidden_states [B, 16, h, w],
    encoder_hidden_states [B, seq, joint_attention_dim] with joint_attention_dim wider than both CLIPs together,
    pooled_projections [B, 32 + 40], timestep [B] float = sigma x 1000 -> out_hidden_states; patch 2, joint blocks with
    AdaLayerNormZero, the last block context_pre_only, 2-D sin-cos positions cropped from pos_embed_max_size);
    vae_decoder/ + vae_encoder/ with 16 latent channels and SD3's scaling_factor 1.5305 and shift_factor 0.0609;
    scheduler FlowMatchEulerDiscreteScheduler, shift 3.0."""
    import train_tiny_dit as dit_mod
    tc1 = text_config(32, 2, 2, "quick_gelu", 32, "CLIPTextModelWithProjection")
    tc2 = text_config(40, 2, 2, "gelu", 40, "CLIPTextModelWithProjection")
    dc = {"sample_size": 16, "patch_size": 2, "in_channels": 16, "num_layers": 3, "attention_head_dim": 16,
          "num_attention_heads": 2, "joint_attention_dim": 96, "caption_projection_dim": 32,
          "pooled_projection_dim": tc1["projection_dim"] + tc2["projection_dim"], "out_channels": 16, "pos_embed_max_size": 16}
    dc.update(over or {})
    if "caption_projection_dim" not in (over or {}):
        dc["caption_projection_dim"] = dc["num_attention_heads"] * dc["attention_head_dim"]
    dc["pos_embed_max_size"] = max(dc["pos_embed_max_size"], dc["sample_size"] // dc["patch_size"])
    vc = vae_config(1.5305, 128, latent_channels=16, shift_factor=0.0609)
    te1 = seeded(seed, lambda: CLIPText(tc1))
    te2 = seeded(seed + 1, lambda: CLIPText(tc2))
    te1.hidden = te2.hidden = True

    tr = seeded(seed + 2, lambda: randomized(lambda: dit_mod.SD3Transformer2DModel(dc)))
    vae = seeded(seed + 3, lambda: AutoencoderKL(vc))
    write_json(os.path.join(out, "model_index.json"), {
        "_class_name": "StableDiffusion3Pipeline", "_diffusers_version": DIFFUSERS_VERSION, "feature_extractor": [None, None],
        "image_encoder": [None, None], "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModelWithProjection"], "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "text_encoder_3": [None, None], "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "tokenizer_3": [None, None], "transformer": ["diffusers", "SD3Transformer2DModel"], "vae": ["diffusers", "AutoencoderKL"],
    })
    write_json(os.path.join(out, "scheduler", "scheduler_config.json"), FLOW_SD3)
    write_tokenizer(os.path.join(out, "tokenizer"))
    write_tokenizer(os.path.join(out, "tokenizer_2"), pad="!")
    write_json(os.path.join(out, "text_encoder", "config.json"), tc1)
    write_json(os.path.join(out, "text_encoder_2", "config.json"), tc2)
    write_json(os.path.join(out, "transformer", "config.json"),
               dict({"_class_name": "SD3Transformer2DModel", "_diffusers_version": DIFFUSERS_VERSION, "dual_attention_layers": [], "qk_norm": None}, **dc))
    write_json(os.path.join(out, "vae_decoder", "config.json"), vc)
    write_json(os.path.join(out, "vae_encoder", "config.json"), vc)
    opset = 17
    hid = lambda c: [f"hidden_states.{i}" for i in range(c["num_hidden_layers"] + 1)]
    seq = {0: "batch_size", 1: "sequence_length"}
    for te, tc, folder in ((te1, tc1, "text_encoder"), (te2, tc2, "text_encoder_2")):
        axes = {"input_ids": seq, "text_embeds": {0: "batch_size"}, "last_hidden_state": seq, **{h: seq for h in hid(tc)}}
        export(te, (sample_ids(),), os.path.join(out, folder, "model.onnx"), ["input_ids"], ["text_embeds", "last_hidden_state"] + hid(tc), axes, opset)
    lat = torch.randn(2, 16, dc["sample_size"], dc["sample_size"])
    args = (lat, torch.randn(2, 77 + 256, dc["joint_attention_dim"]), torch.randn(2, dc["pooled_projection_dim"]), torch.tensor([1000.0, 1000.0]))
    axes = {"hidden_states": {0: "batch_size", 2: "height", 3: "width"}, "encoder_hidden_states": seq, "pooled_projections": {0: "batch_size"},
            "timestep": {0: "step"}, "out_hidden_states": {0: "batch_size", 2: "height", 3: "width"}}
    export(tr, args, os.path.join(out, "transformer", "model.onnx"), ["hidden_states", "encoder_hidden_states", "pooled_projections", "timestep"],
           ["out_hidden_states"], axes, opset)
    export_vae_halves(out, vae, lat, opset)


# ----------------------------------------------------------------------------------------------------------------
# Flux: a T5 encoder, its Unigram tokenizer.json, and FluxTransformer2DModel in miniature

T5_WORDS = ["a", "photo", "of", "the", "cat", "dog", "red", "blue", "green", "on", "grass", "in", "with", "and", "sky"]


def write_t5_tokenizer(folder, max_length):
    """tokenizer.json (+ tokenizer_config.json, special_tokens_map.json) as T5TokenizerFast saves it, over a small
    Unigram vocabulary: <pad> 0, </s> 1, <unk> 2, then "▁" + word pieces, "▁" and single characters; Metaspace
    pre-tokenizer, a post-processor that appends </s> (T5 adds no BOS)."""
    os.makedirs(folder, exist_ok=True)
    pieces = [["<pad>", 0.0], ["</s>", 0.0], ["<unk>", 0.0], ["\u2581", -2.0]]
    pieces += [["\u2581" + w, -3.0 - 0.01 * i] for i, w in enumerate(T5_WORDS)]
    pieces += [[c, -8.0 - 0.01 * i] for i, c in enumerate("abcdefghijklmnopqrstuvwxyz0123456789.,!'-")]
    special = lambda i, c: {"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
    tj = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [special(0, "<pad>"), special(1, "</s>"), special(2, "<unk>")],
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]},
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}},
                                    {"Sequence": {"id": "B", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                           "special_tokens": {"</s>": {"id": "</s>", "ids": [1], "tokens": ["</s>"]}}},
        "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
        "model": {"type": "Unigram", "unk_id": 2, "vocab": pieces, "byte_fallback": False},
    }
    with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, indent=2)
        f.write("\n")
    write_json(os.path.join(folder, "special_tokens_map.json"), {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"})
    write_json(os.path.join(folder, "tokenizer_config.json"), {
        "add_prefix_space": True, "added_tokens_decoder": {"0": added("<pad>", False), "1": added("</s>", False), "2": added("<unk>", False)},
        "clean_up_tokenization_spaces": True, "eos_token": "</s>", "extra_ids": 0, "legacy": True, "model_max_length": max_length,
        "pad_token": "<pad>", "sp_model_kwargs": {}, "tokenizer_class": "T5Tokenizer", "unk_token": "<unk>"})
    return len(pieces)


class T5LayerNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def t5_bucket(rel, num_buckets=32, max_distance=128):
    """transformers T5Attention._relative_position_bucket, bidirectional."""
    num_buckets //= 2
    ret = (rel > 0).long() * num_buckets
    n = torch.abs(rel)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    large = max_exact + (torch.log(n.float() / max_exact + 1e-6) / math.log(max_distance / max_exact) * (num_buckets - max_exact)).long()
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    return ret + torch.where(is_small, n, large)


class T5Block(nn.Module):
    def __init__(self, d, heads, dkv, ff, bias):
        super().__init__()
        self.heads, self.dkv = heads, dkv
        self.ln1, self.ln2 = T5LayerNorm(d), T5LayerNorm(d)
        self.q, self.k, self.v = (nn.Linear(d, heads * dkv, bias=False) for _ in range(3))
        self.o = nn.Linear(heads * dkv, d, bias=False)
        self.relative_attention_bias = nn.Embedding(32, heads) if bias else None
        self.wi_0, self.wi_1 = nn.Linear(d, ff, bias=False), nn.Linear(d, ff, bias=False)
        self.wo = nn.Linear(ff, d, bias=False)

    def forward(self, x, pos_bias):
        b, n, _ = x.shape
        h = self.ln1(x)
        split = lambda t: t.reshape(b, n, self.heads, self.dkv).transpose(1, 2)
        q, k, v = split(self.q(h)), split(self.k(h)), split(self.v(h))
        if self.relative_attention_bias is not None:
            pos = torch.arange(n)
            pos_bias = self.relative_attention_bias(t5_bucket(pos[None, :] - pos[:, None])).permute(2, 0, 1)[None]
        w = torch.softmax(q @ k.transpose(-1, -2) + pos_bias, dim=-1)  # T5: no 1/sqrt(d) scaling
        x = x + self.o((w @ v).transpose(1, 2).reshape(b, n, -1))
        h = self.ln2(x)
        return x + self.wo(F.gelu(self.wi_0(h), approximate="tanh") * self.wi_1(h)), pos_bias


class T5Encoder(nn.Module):
    """T5EncoderModel (v1.1: gated-gelu feed-forward, RMS layer norms, relative position bias from the first block) ->
    last_hidden_state."""

    def __init__(self, c):
        super().__init__()
        self.shared = nn.Embedding(c["vocab_size"], c["d_model"])
        self.block = nn.ModuleList([T5Block(c["d_model"], c["num_heads"], c["d_kv"], c["d_ff"], i == 0) for i in range(c["num_layers"])])
        self.final_layer_norm = T5LayerNorm(c["d_model"])

    def forward(self, input_ids):
        x = self.shared(input_ids)
        bias = None
        for blk in self.block:
            x, bias = blk(x, bias)
        return self.final_layer_norm(x)


def t5_config(vocab, d=24, layers=2, heads=2, dkv=8, ff=48):
    return {"_name_or_path": "", "architectures": ["T5EncoderModel"], "d_ff": ff, "d_kv": dkv, "d_model": d,
            "dense_act_fn": "gelu_new", "dropout_rate": 0.0, "eos_token_id": 1, "feed_forward_proj": "gated-gelu",
            "is_encoder_decoder": True, "is_gated_act": True, "layer_norm_epsilon": 1e-6, "model_type": "t5",
            "num_decoder_layers": layers, "num_heads": heads, "num_layers": layers, "pad_token_id": 0,
            "relative_attention_max_distance": 128, "relative_attention_num_buckets": 32, "torch_dtype": "float32",
            "transformers_version": "4.46.3", "use_cache": True, "vocab_size": vocab}


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def flux_rope(ids, axes, theta=10000.0):
    """FluxPosEmbed: per id axis, cos/sin of id x omega_k (k < axes_dim / 2), each repeated twice (interleaved pairs)."""
    cos, sin = [], []
    for i, d in enumerate(axes):
        omega = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d)
        f = ids[:, i:i + 1].float() * omega[None, :]
        cos.append(torch.cos(f).repeat_interleave(2, dim=1))
        sin.append(torch.sin(f).repeat_interleave(2, dim=1))
    return torch.cat(cos, dim=-1), torch.cat(sin, dim=-1)


def apply_rope(x, cos, sin):
    """x [B, H, S, D]; rotate interleaved pairs (x1, x2) -> (-x2, x1)."""
    b, h, s_, d = x.shape
    pairs = x.reshape(b, h, s_, d // 2, 2)
    rot = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).reshape(b, h, s_, d)
    return x * cos[None, None] + rot * sin[None, None]


class FluxAttention(nn.Module):
    def __init__(self, d, heads, joint, pre_only):
        super().__init__()
        self.heads = heads
        hd = d // heads
        self.to_q, self.to_k, self.to_v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.norm_q, self.norm_k = RMSNorm(hd), RMSNorm(hd)
        self.joint = joint
        if joint:
            self.add_q_proj, self.add_k_proj, self.add_v_proj = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
            self.norm_added_q, self.norm_added_k = RMSNorm(hd), RMSNorm(hd)
            self.to_add_out = nn.Linear(d, d)
        self.to_out = None if pre_only else nn.ModuleList([nn.Linear(d, d)])

    def forward(self, x, cos, sin, c=None):
        b, n, d = x.shape
        hd = d // self.heads
        split = lambda t: t.reshape(b, -1, self.heads, hd).transpose(1, 2)
        q, k, v = self.norm_q(split(self.to_q(x))), self.norm_k(split(self.to_k(x))), split(self.to_v(x))
        if c is not None:
            # Flux puts the text tokens first
            q = torch.cat([self.norm_added_q(split(self.add_q_proj(c))), q], dim=2)
            k = torch.cat([self.norm_added_k(split(self.add_k_proj(c))), k], dim=2)
            v = torch.cat([split(self.add_v_proj(c)), v], dim=2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        w = torch.softmax((q @ k.transpose(-1, -2)) * hd ** -0.5, dim=-1)
        o = (w @ v).transpose(1, 2).reshape(b, -1, d)
        if c is not None:
            m = c.shape[1]
            return self.to_out[0](o[:, m:]), self.to_add_out(o[:, :m])
        return o


class FluxDoubleBlock(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        import train_tiny_dit as dm
        self.norm1, self.norm1_context = dm.AdaZero(d), dm.AdaZero(d)
        self.attn = FluxAttention(d, heads, True, False)
        self.norm2, self.norm2_context = dm.PlainLayerNorm(d), dm.PlainLayerNorm(d)
        self.ff, self.ff_context = dm.FeedForward(d), dm.FeedForward(d)

    def forward(self, x, c, temb, cos, sin):
        nx, g, sh2, sc2, g2 = self.norm1(x, temb)
        nc, cg, csh2, csc2, cg2 = self.norm1_context(c, temb)
        ax, ac = self.attn(nx, cos, sin, nc)
        x = x + g[:, None] * ax
        x = x + g2[:, None] * self.ff(self.norm2(x) * (1 + sc2[:, None]) + sh2[:, None])
        c = c + cg[:, None] * ac
        c = c + cg2[:, None] * self.ff_context(self.norm2_context(c) * (1 + csc2[:, None]) + csh2[:, None])
        return x, c


class FluxSingleBlock(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        import train_tiny_dit as dm
        self.norm = nn.Module()
        self.norm.linear = nn.Linear(d, 3 * d)
        self.norm.norm = dm.PlainLayerNorm(d)
        self.proj_mlp = nn.Linear(d, 4 * d)
        self.attn = FluxAttention(d, heads, False, True)
        self.proj_out = nn.Linear(5 * d, d)

    def forward(self, x, temb, cos, sin):
        sh, sc, g = self.norm.linear(F.silu(temb)).chunk(3, dim=1)
        h = self.norm.norm(x) * (1 + sc[:, None]) + sh[:, None]
        mlp = F.gelu(self.proj_mlp(h), approximate="tanh")
        out = self.proj_out(torch.cat([self.attn(h, cos, sin), mlp], dim=2))
        return x + g[:, None] * out


class FluxTransformer(nn.Module):
    """FluxTransformer2DModel: packed latents [B, tokens, 4 C] -> [B, tokens, 4 C]; timestep = sigma (x 1000 inside),
    guidance (x 1000 inside) when guidance_embeds; rotary positions from cat(txt_ids, img_ids)."""

    def __init__(self, c):
        super().__init__()
        import train_tiny_dit as dm
        d = c["num_attention_heads"] * c["attention_head_dim"]
        self.c = c
        self.x_embedder = nn.Linear(c["in_channels"], d)
        self.context_embedder = nn.Linear(c["joint_attention_dim"], d)
        self.time_text_embed = nn.Module()
        self.time_text_embed.timestep_embedder = dm.Mlp2(256, d)
        self.time_text_embed.guidance_embedder = dm.Mlp2(256, d) if c["guidance_embeds"] else None
        self.time_text_embed.text_embedder = dm.Mlp2(c["pooled_projection_dim"], d)
        self.transformer_blocks = nn.ModuleList([FluxDoubleBlock(d, c["num_attention_heads"]) for _ in range(c["num_layers"])])
        self.single_transformer_blocks = nn.ModuleList([FluxSingleBlock(d, c["num_attention_heads"]) for _ in range(c["num_single_layers"])])
        self.norm_out = dm.AdaContinuous(d)
        self.proj_out = nn.Linear(d, c["in_channels"])

    def forward(self, hidden_states, encoder_hidden_states, pooled_projections, timestep, img_ids, txt_ids, guidance=None):
        tt = self.time_text_embed
        temb = tt.timestep_embedder(Timesteps(256)(timestep * 1000)) + tt.text_embedder(pooled_projections)
        if tt.guidance_embedder is not None:
            temb = temb + tt.guidance_embedder(Timesteps(256)(guidance * 1000))
        x = self.x_embedder(hidden_states)
        c = self.context_embedder(encoder_hidden_states)
        cos, sin = flux_rope(torch.cat([txt_ids, img_ids], dim=0), self.c["axes_dims_rope"])
        for blk in self.transformer_blocks:
            x, c = blk(x, c, temb, cos, sin)
        m = c.shape[1]
        xc = torch.cat([c, x], dim=1)
        for blk in self.single_transformer_blocks:
            xc = blk(xc, temb, cos, sin)
        return self.proj_out(self.norm_out(xc[:, m:], temb))


FLOW_FLUX = dict(FLOW_SD3, base_image_seq_len=256, max_image_seq_len=4096, shift=3.0, use_dynamic_shifting=True)


def make_flux_optimum(out, seed):
    """FluxPipeline (FLUX.1-dev's conventions) as Optimum writes it: tokenizer/ + text_encoder/ (CLIPTextModel: only
    pooler_output is read), tokenizer_2/ (T5 Unigram tokenizer.json, max length 64 here) + text_encoder_2/
    (T5EncoderModel -> last_hidden_state); transformer/ (FluxTransformer2DModel: hidden_states packed 2x2 [B, (h/2)(w/2),
    64], encoder_hidden_states [B, seq, 24], pooled_projections [B, 32], timestep [B] = sigma, img_ids [(h/2)(w/2), 3]
    and txt_ids [seq, 3] as int64, guidance [B] -> out_hidden_states), 16 latent channels, Flux's VAE scaling 0.3611
    and shift 0.1159, FlowMatchEulerDiscreteScheduler with dynamic shifting. transformer/config.json carries a
    sample_size (16 latents) that Flux's config does not have (diffusers ignores it): without it the default would be
    diffusers' 128 latents, 4,096 tokens, too slow for tests."""
    tc = text_config(32, 2, 2, "quick_gelu", 32, "CLIPTextModel")
    vocab = write_t5_tokenizer(os.path.join(out, "tokenizer_2"), 64)
    t5c = t5_config(vocab)
    fc = {"_class_name": "FluxTransformer2DModel", "_diffusers_version": DIFFUSERS_VERSION, "attention_head_dim": 16,
          "axes_dims_rope": [4, 6, 6], "guidance_embeds": True, "in_channels": 64, "joint_attention_dim": t5c["d_model"],
          "num_attention_heads": 2, "num_layers": 2, "num_single_layers": 2, "out_channels": None, "patch_size": 1,
          "pooled_projection_dim": tc["hidden_size"], "sample_size": 16}
    vc = vae_config(0.3611, 128, latent_channels=16, shift_factor=0.1159)
    te = seeded(seed, lambda: CLIPText(tc))
    t5 = seeded(seed + 1, lambda: T5Encoder(t5c))

    tr = seeded(seed + 2, lambda: randomized(lambda: FluxTransformer(fc)))
    vae = seeded(seed + 3, lambda: AutoencoderKL(vc))
    write_json(os.path.join(out, "model_index.json"), {
        "_class_name": "FluxPipeline", "_diffusers_version": DIFFUSERS_VERSION, "feature_extractor": [None, None],
        "image_encoder": [None, None], "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"], "text_encoder_2": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "T5TokenizerFast"],
        "transformer": ["diffusers", "FluxTransformer2DModel"], "vae": ["diffusers", "AutoencoderKL"],
    })
    write_json(os.path.join(out, "scheduler", "scheduler_config.json"), FLOW_FLUX)
    write_tokenizer(os.path.join(out, "tokenizer"))
    write_json(os.path.join(out, "text_encoder", "config.json"), tc)
    write_json(os.path.join(out, "text_encoder_2", "config.json"), t5c)
    write_json(os.path.join(out, "transformer", "config.json"), fc)
    write_json(os.path.join(out, "vae_decoder", "config.json"), vc)
    write_json(os.path.join(out, "vae_encoder", "config.json"), vc)
    opset = 17
    seq = {0: "batch_size", 1: "sequence_length"}
    export(te, (sample_ids(),), os.path.join(out, "text_encoder", "model.onnx"), ["input_ids"], ["last_hidden_state", "pooler_output"], OPT_TEXT_AXES, opset)
    ids = torch.zeros(2, 64, dtype=torch.long)
    ids[:, :3] = torch.tensor([4, 5, 6])
    ids[:, 3] = 1
    export(t5, (ids,), os.path.join(out, "text_encoder_2", "model.onnx"), ["input_ids"], ["last_hidden_state"],
           {"input_ids": seq, "last_hidden_state": seq}, opset)
    n = 8 * 8
    img_ids = torch.stack([torch.zeros(n, dtype=torch.long), torch.arange(n) // 8, torch.arange(n) % 8], dim=1)
    args = (torch.randn(2, n, 64), torch.randn(2, 64, t5c["d_model"]), torch.randn(2, tc["hidden_size"]), torch.tensor([1.0, 1.0]),
            img_ids, torch.zeros(64, 3, dtype=torch.long), torch.tensor([3.5, 3.5]))
    axes = {"hidden_states": {0: "batch_size", 1: "packed_height_width"}, "encoder_hidden_states": seq, "pooled_projections": {0: "batch_size"},
            "timestep": {0: "batch_size"}, "img_ids": {0: "packed_height_width"}, "txt_ids": {0: "sequence_length"}, "guidance": {0: "batch_size"},
            "out_hidden_states": {0: "batch_size", 1: "packed_height_width"}}
    export(tr, args, os.path.join(out, "transformer", "model.onnx"),
           ["hidden_states", "encoder_hidden_states", "pooled_projections", "timestep", "img_ids", "txt_ids", "guidance"],
           ["out_hidden_states"], axes, opset)
    lat = torch.randn(2, 16, 16, 16)
    export_vae_halves(out, vae, lat, opset)
    write_flux_reference(out + ".reference.json", te, t5, tr, tc, FLOW_FLUX)


def make_sd3_t5_parts(out, seed):
    """SD3's third encoder alone, for tests that add it to sd3-optimum: text_encoder_3/ (T5EncoderModel as wide as
    that fixture's joint_attention_dim, 96) and tokenizer_3/ (the T5 Unigram tokenizer.json, model_max_length 512);
    diffusers then uses max_sequence_length 256 of its tokens."""
    vocab = write_t5_tokenizer(os.path.join(out, "tokenizer_3"), 512)
    c = t5_config(vocab, d=96)
    t5 = seeded(seed, lambda: T5Encoder(c))
    write_json(os.path.join(out, "text_encoder_3", "config.json"), c)
    seq = {0: "batch_size", 1: "sequence_length"}
    ids = torch.zeros(2, 16, dtype=torch.long)
    ids[:, :2] = torch.tensor([4, 1])
    export(t5, (ids,), os.path.join(out, "text_encoder_3", "model.onnx"), ["input_ids"], ["last_hidden_state"],
           {"input_ids": seq, "last_hidden_state": seq}, 17)


@torch.no_grad()
def write_flux_reference(path, te, t5, tr, tc, sched, steps=4, guidance=3.5):
    """FluxPipeline's loop replayed in PyTorch on the fixture's own modules (beside the fixture, not inside it): prompt
    "a photo of cat" (CLIP ids from the fixture vocabulary; T5 ids ▁a ▁photo ▁of ▁cat </s>, padded with <pad> to 64),
    the initial latents x0[c, y, x] = sin(0.37 c + 0.11 y + 0.07 x) (16x16x16), packed 2x2; sigmas linspace(1, 1/N, N)
    with the dynamic shift mu = calculate_shift(64 tokens); timestep = sigma, guidance 3.5; x <- x + (s' - s) v."""
    clip_ids = torch.full((1, 77), VOCAB[EOS], dtype=torch.long)
    clip_ids[0, 0] = VOCAB[BOS]
    clip_ids[0, 1:5] = torch.tensor([VOCAB["a</w>"], VOCAB["photo</w>"], VOCAB["of</w>"], VOCAB["cat</w>"]])
    t5_ids = torch.zeros(1, 64, dtype=torch.long)
    words = {w: 4 + i for i, w in enumerate(T5_WORDS)}
    t5_ids[0, :5] = torch.tensor([words["a"], words["photo"], words["of"], words["cat"], 1])
    pooled = te(clip_ids)[1]
    hidden = t5(t5_ids)
    C, H, W = 16, 16, 16
    c, y, x = torch.meshgrid(torch.arange(C), torch.arange(H), torch.arange(W), indexing="ij")
    x0 = torch.sin(0.37 * c + 0.11 * y + 0.07 * x).float()[None]
    pack = lambda z: z.reshape(1, C, H // 2, 2, W // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(1, (H // 2) * (W // 2), C * 4)
    unpack = lambda z: z.reshape(1, H // 2, W // 2, C, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(1, C, H, W)
    n = (H // 2) * (W // 2)
    m = (sched["max_shift"] - sched["base_shift"]) / (sched["max_image_seq_len"] - sched["base_image_seq_len"])
    mu = n * m + sched["base_shift"] - m * sched["base_image_seq_len"]
    sig = np.linspace(1.0, 1 / steps, steps).astype(np.float32).astype(np.float64)
    sig = math.exp(mu) / (math.exp(mu) + (1 / sig - 1))
    sig = np.append(sig.astype(np.float32).astype(np.float64), 0.0)
    img_ids = torch.stack([torch.zeros(n, dtype=torch.long), torch.arange(n) // (W // 2), torch.arange(n) % (W // 2)], dim=1)
    txt_ids = torch.zeros(64, 3, dtype=torch.long)
    lat = pack(x0).double()
    for i in range(steps):
        v = tr(lat.float(), hidden, pooled, torch.tensor([sig[i]], dtype=torch.float32), img_ids, txt_ids, torch.tensor([guidance]))
        lat = lat + (sig[i + 1] - sig[i]) * v.double()
    write_json(path, {
        "about": "tools/make_sd_fixtures.py: FluxPipeline's sampling loop in PyTorch on the flux-optimum fixture's modules",
        "prompt": "a photo of cat", "steps": steps, "guidance": guidance, "init": "sin(0.37 c + 0.11 y + 0.07 x), [16, 16, 16]",
        "sigmas": [float(v) for v in sig], "final": [round(float(v), 7) for v in unpack(lat).flatten()],
    })


class MaskedAttention(nn.Module):
    """diffusers Attention with bias (PixArt's attn1 / attn2) and an optional key mask (1 keep, 0 discard)."""

    def __init__(self, d, ctx, heads):
        super().__init__()
        self.heads = heads
        self.to_q, self.to_k, self.to_v = nn.Linear(d, d), nn.Linear(ctx, d), nn.Linear(ctx, d)
        self.to_out = nn.ModuleList([nn.Linear(d, d), nn.Dropout(0.0)])

    def forward(self, x, c, mask=None):
        b, n, d = x.shape
        h = self.heads
        q = self.to_q(x).reshape(b, n, h, d // h).transpose(1, 2)
        k = self.to_k(c).reshape(b, c.shape[1], h, d // h).transpose(1, 2)
        v = self.to_v(c).reshape(b, c.shape[1], h, d // h).transpose(1, 2)
        s_ = torch.matmul(q, k.transpose(-1, -2)) * (d // h) ** -0.5
        if mask is not None:
            # diffusers: (1 - mask) * -10000.0 added to the scores
            s_ = s_ + ((1 - mask.float()) * -10000.0)[:, None, None, :]
        return self.to_out[0](torch.matmul(torch.softmax(s_, dim=-1), v).transpose(1, 2).reshape(b, n, d))


class PixArtBlock(nn.Module):
    """BasicTransformerBlock with norm_type ada_norm_single: a scale_shift_table [6, d] added to the shared timestep
    modulation; self-attention, cross-attention to the caption (no norm before it), feed-forward (gelu-tanh)."""

    def __init__(self, d, heads):
        super().__init__()
        import train_tiny_dit as dm
        self.norm1, self.norm2 = dm.PlainLayerNorm(d), dm.PlainLayerNorm(d)
        self.attn1 = MaskedAttention(d, d, heads)
        self.attn2 = MaskedAttention(d, d, heads)
        self.ff = dm.FeedForward(d)
        self.scale_shift_table = nn.Parameter(torch.randn(6, d) / d ** 0.5)

    def forward(self, x, c, t6, mask):
        b = x.shape[0]
        sh, sc, g, sh2, sc2, g2 = (self.scale_shift_table[None] + t6.reshape(b, 6, -1)).chunk(6, dim=1)
        x = x + g * self.attn1(self.norm1(x) * (1 + sc) + sh, self.norm1(x) * (1 + sc) + sh)
        x = x + self.attn2(x, c, mask)
        return x + g2 * self.ff(self.norm2(x) * (1 + sc2) + sh2)


class AdaLayerNormSingle(nn.Module):
    """PixArt's adaLN-single: the timestep embedding (emb.timestep_embedder) and one linear to 6 x d, shared by every
    block -> (modulation [B, 6 d], embedded timestep [B, d])."""

    def __init__(self, d):
        super().__init__()
        import train_tiny_dit as dm
        self.emb = nn.Module()
        self.emb.timestep_embedder = dm.Mlp2(256, d)
        self.linear = nn.Linear(d, 6 * d)

    def forward(self, t):
        e = self.emb.timestep_embedder(Timesteps(256)(t))
        return self.linear(F.silu(e)), e


class CaptionProjection(nn.Module):
    """PixArtAlphaTextProjection with gelu-tanh."""

    def __init__(self, cin, d):
        super().__init__()
        self.linear_1, self.linear_2 = nn.Linear(cin, d), nn.Linear(d, d)

    def forward(self, x):
        return self.linear_2(F.gelu(self.linear_1(x), approximate="tanh"))


class PixArtTransformer(nn.Module):
    """PixArtTransformer2DModel (adaLN-single): hidden_states [B, C, h, w], encoder_hidden_states [B, L, caption],
    timestep [B], encoder_attention_mask [B, L] -> [B, 2C, h, w] (noise and the learned variance)."""

    def __init__(self, c):
        super().__init__()
        import train_tiny_dit as dm
        d = c["num_attention_heads"] * c["attention_head_dim"]
        self.c = c
        self.pos_embed = dm.PatchEmbed(dict(c, pos_embed_max_size=c["sample_size"] // c["patch_size"]))
        self.adaln_single = AdaLayerNormSingle(d)
        self.caption_projection = CaptionProjection(c["caption_channels"], d)
        self.transformer_blocks = nn.ModuleList([PixArtBlock(d, c["num_attention_heads"]) for _ in range(c["num_layers"])])
        self.norm_out = dm.PlainLayerNorm(d)
        self.scale_shift_table = nn.Parameter(torch.randn(2, d) / d ** 0.5)
        self.proj_out = nn.Linear(d, c["patch_size"] ** 2 * c["out_channels"])

    def forward(self, hidden_states, encoder_hidden_states, timestep, encoder_attention_mask):
        h, w = hidden_states.shape[-2:]
        p = self.c["patch_size"]
        x = self.pos_embed(hidden_states)
        t6, emb = self.adaln_single(timestep)
        c = self.caption_projection(encoder_hidden_states)
        for blk in self.transformer_blocks:
            x = blk(x, c, t6, encoder_attention_mask)
        sh, sc = (self.scale_shift_table[None] + emb[:, None]).chunk(2, dim=1)
        x = self.proj_out(self.norm_out(x) * (1 + sc) + sh)
        b = x.shape[0]
        x = x.reshape(b, h // p, w // p, p, p, self.c["out_channels"])
        return torch.einsum("nhwpqc->nchpwq", x).reshape(b, self.c["out_channels"], h, w)


DPM_PIXART = {  # PixArt-Sigma's scheduler config (DPMSolverMultistepScheduler, SD's betas)
    "_class_name": "DPMSolverMultistepScheduler", "_diffusers_version": DIFFUSERS_VERSION, "algorithm_type": "dpmsolver++",
    "beta_end": 0.02, "beta_schedule": "linear", "beta_start": 0.0001, "dynamic_thresholding_ratio": 0.995,
    "euler_at_final": False, "final_sigmas_type": "zero", "lambda_min_clipped": None, "lower_order_final": True,
    "num_train_timesteps": 1000, "prediction_type": "epsilon", "sample_max_value": 1.0, "solver_order": 2,
    "solver_type": "midpoint", "steps_offset": 0, "thresholding": False, "timestep_spacing": "linspace",
    "trained_betas": None, "use_karras_sigmas": False, "use_lu_lambdas": False, "variance_type": None,
}


def make_pixart_optimum(out, seed):
    """PixArtSigmaPipeline's components in the Optimum-style layout (no ONNX exporter exists for PixArt: the names are
    diffusers' forward arguments): tokenizer/ (T5 Unigram tokenizer.json, max length 300 as PixArt-Sigma) +
    text_encoder/ (T5EncoderModel -> last_hidden_state; input_ids only, as Optimum exports T5); transformer/
    (PixArtTransformer2DModel, adaLN-single: hidden_states [B, 4, h, w], encoder_hidden_states [B, L, 24], timestep [B]
    int64, encoder_attention_mask [B, L] int64 -> out_hidden_states [B, 8, h, w]: noise and the learned variance),
    SD's VAE conventions (4 channels, 0.18215), DPMSolverMultistepScheduler."""
    vocab = write_t5_tokenizer(os.path.join(out, "tokenizer"), 300)
    t5c = t5_config(vocab)
    pc = {"_class_name": "PixArtTransformer2DModel", "_diffusers_version": DIFFUSERS_VERSION, "attention_head_dim": 16,
          "caption_channels": t5c["d_model"], "in_channels": 4, "norm_type": "ada_norm_single", "num_attention_heads": 2,
          "num_layers": 2, "out_channels": 8, "patch_size": 2, "sample_size": 16, "use_additional_conditions": False}
    vc = vae_config(0.18215, 128)
    t5 = seeded(seed, lambda: T5Encoder(t5c))
    tr = seeded(seed + 1, lambda: PixArtTransformer(pc))
    vae = seeded(seed + 2, lambda: AutoencoderKL(vc))
    write_json(os.path.join(out, "model_index.json"), {
        "_class_name": "PixArtSigmaPipeline", "_diffusers_version": DIFFUSERS_VERSION,
        "scheduler": ["diffusers", "DPMSolverMultistepScheduler"], "text_encoder": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "T5TokenizerFast"], "transformer": ["diffusers", "PixArtTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    })
    write_json(os.path.join(out, "scheduler", "scheduler_config.json"), DPM_PIXART)
    write_json(os.path.join(out, "text_encoder", "config.json"), t5c)
    write_json(os.path.join(out, "transformer", "config.json"), pc)
    write_json(os.path.join(out, "vae_decoder", "config.json"), vc)
    write_json(os.path.join(out, "vae_encoder", "config.json"), vc)
    opset = 17
    seq = {0: "batch_size", 1: "sequence_length"}
    ids = torch.zeros(2, 300, dtype=torch.long)
    ids[:, :3] = torch.tensor([4, 5, 1])
    export(t5, (ids,), os.path.join(out, "text_encoder", "model.onnx"), ["input_ids"], ["last_hidden_state"],
           {"input_ids": seq, "last_hidden_state": seq}, opset)
    mask = (torch.arange(300)[None] < 3).long().repeat(2, 1)
    lat = torch.randn(2, 4, 16, 16)
    export(tr, (lat, torch.randn(2, 300, t5c["d_model"]), torch.tensor([999, 999]), mask), os.path.join(out, "transformer", "model.onnx"),
           ["hidden_states", "encoder_hidden_states", "timestep", "encoder_attention_mask"], ["out_hidden_states"],
           {"hidden_states": {0: "batch_size", 2: "height", 3: "width"}, "encoder_hidden_states": seq, "timestep": {0: "batch_size"},
            "encoder_attention_mask": seq, "out_hidden_states": {0: "batch_size", 2: "height", 3: "width"}}, opset)
    export_vae_halves(out, vae, lat, opset)
    write_pixart_reference(out + ".reference.json", t5, tr)


@torch.no_grad()
def write_pixart_reference(path, t5, tr, guidance=4.5):
    """One guided evaluation as PixArtSigmaPipeline makes it, in PyTorch on the fixture's modules: prompt "a photo of
    cat" and negative "" through the T5 (ids only, as the ONNX export takes them), their attention masks (1 up to and
    including </s>), the batch [uncond; cond], timestep 500, latents sin(0.37 c + 0.11 y + 0.07 x); the noise is the
    first 4 of the 8 output channels (learned sigma), uncond + 4.5 (cond - uncond)."""
    words = {w: 4 + i for i, w in enumerate(T5_WORDS)}
    ids = torch.zeros(2, 300, dtype=torch.long)
    ids[0, 0] = 1
    ids[1, :5] = torch.tensor([words["a"], words["photo"], words["of"], words["cat"], 1])
    mask = torch.zeros(2, 300, dtype=torch.long)
    mask[0, :1] = 1
    mask[1, :5] = 1
    states = t5(ids)
    c, y, x = torch.meshgrid(torch.arange(4), torch.arange(16), torch.arange(16), indexing="ij")
    lat = torch.sin(0.37 * c + 0.11 * y + 0.07 * x).float()[None].repeat(2, 1, 1, 1)
    out = tr(lat, states, torch.tensor([500, 500]), mask)[:, :4].double()
    eps = out[0] + guidance * (out[1] - out[0])
    write_json(path, {
        "about": "tools/make_sd_fixtures.py: one guided PixArtSigmaPipeline evaluation in PyTorch on the pixart-optimum fixture's modules",
        "prompt": "a photo of cat", "negative": "", "timestep": 500, "guidance": guidance,
        "init": "sin(0.37 c + 0.11 y + 0.07 x), [4, 16, 16]", "eps": [round(float(v), 7) for v in eps.flatten()],
    })


# google/ddpm-cifar10-32's schedule (linear betas 1e-4..0.02 over 1000 steps, fixed_small, clip_sample) with every
# field DDPMScheduler.save_config writes in diffusers 0.31
DDPM = {
    "_class_name": "DDPMScheduler", "_diffusers_version": DIFFUSERS_VERSION, "beta_end": 0.02, "beta_schedule": "linear",
    "beta_start": 0.0001, "clip_sample": True, "clip_sample_range": 1.0, "dynamic_thresholding_ratio": 0.995,
    "num_train_timesteps": 1000, "prediction_type": "epsilon", "rescale_betas_zero_snr": False, "sample_max_value": 1.0,
    "steps_offset": 0, "thresholding": False, "timestep_spacing": "leading", "trained_betas": None,
    "variance_type": "fixed_small",
}


def make_ddpm_plain(out, seed):
    """DDPMPipeline.save_pretrained (model_index.json, scheduler/, unet/config.json) + the UNet2DModel exported to
    unet/model.onnx: sample [batch, 3, height, width] with dynamic height and width, timestep rank 1 [batch]."""
    uc = unet2d_config()
    unet = seeded(seed, lambda: UNet2DModel(uc))
    write_json(os.path.join(out, "model_index.json"), {
        "_class_name": "DDPMPipeline", "_diffusers_version": DIFFUSERS_VERSION,
        "scheduler": ["diffusers", "DDPMScheduler"], "unet": ["diffusers", "UNet2DModel"],
    })
    write_json(os.path.join(out, "scheduler", "scheduler_config.json"), DDPM)
    write_json(os.path.join(out, "unet", "config.json"), uc)
    s = uc["sample_size"]
    axes = {"sample": {0: "batch", 2: "height", 3: "width"}, "timestep": {0: "batch"}, "out_sample": {0: "batch", 2: "height", 3: "width"}}
    export(unet, (torch.randn(2, uc["in_channels"], s, s), torch.tensor([999.0, 999.0])), os.path.join(out, "unet", "model.onnx"),
           ["sample", "timestep"], ["out_sample"], axes, 17)


def folder_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "test", "fixtures"))
    ap.add_argument("--only", default="sd15-optimum,sdxl-optimum,sd15-legacy,sd15-fp16,ddpm-plain,lcm-optimum")
    ap.add_argument("--legacy-timestep", choices=["int64", "float32"], default="int64")
    ap.add_argument("--seed", type=int, default=1500)
    ap.add_argument("--unet-channels", help="sd15-optimum only: the unet's block_out_channels (e.g. 320,640,1280,1280, SD 1.5's)")
    ap.add_argument("--unet-heads", type=int, help="sd15-optimum only: attention heads per block (SD 1.5: 8)")
    ap.add_argument("--unet-groups", type=int, help="sd15-optimum only: GroupNorm groups (SD 1.5: 32)")
    ap.add_argument("--sample-size", type=int, help="sd15-optimum and sd3-optimum: the latent size in the denoiser's config.json (SD 1.5: 64)")
    ap.add_argument("--dit-heads", type=int, help="sd3-optimum only: attention heads (SD3-medium: 24, head dim 64)")
    ap.add_argument("--dit-layers", type=int, help="sd3-optimum only: joint transformer blocks (SD3-medium: 24)")
    args = ap.parse_args()
    unet_over = {}
    if args.unet_channels:
        unet_over["block_out_channels"] = [int(c) for c in args.unet_channels.split(",")]
    if args.unet_heads:
        unet_over["attention_head_dim"] = args.unet_heads
    if args.unet_groups:
        unet_over["norm_num_groups"] = args.unet_groups
    if args.sample_size:
        unet_over["sample_size"] = args.sample_size
    torch.set_num_threads(1)
    for name in args.only.split(","):
        out = os.path.join(args.out, name)
        if os.path.isdir(out):
            shutil.rmtree(out)
        torch.manual_seed(args.seed + 100)  # dummy export inputs
        if name == "sd15-optimum":
            make_sd15_optimum(out, args.seed, unet_over=unet_over)
        elif unet_over and not (name == "sd3-optimum" and set(unet_over) <= {"sample_size"}):
            raise SystemExit("--unet-channels, --unet-heads and --unet-groups apply to sd15-optimum only; --sample-size to sd15-optimum and sd3-optimum")
        elif name == "sd15-fp16":
            make_sd15_optimum(out, args.seed, fp16=True)
        elif name == "sd15-legacy":
            make_sd15_legacy(out, args.seed, args.legacy_timestep)
        elif name == "sdxl-optimum":
            make_sdxl_optimum(out, args.seed + 10)
        elif name == "flux-optimum":
            make_flux_optimum(out, args.seed + 40)
        elif name == "pixart-optimum":
            make_pixart_optimum(out, args.seed + 60)
        elif name == "sd3-t5-parts":
            make_sd3_t5_parts(out, args.seed + 50)
        elif name == "sd3-optimum":
            dit_over = {}
            if args.dit_heads:
                dit_over.update(num_attention_heads=args.dit_heads, attention_head_dim=64)
            if args.dit_layers:
                dit_over["num_layers"] = args.dit_layers
            if args.sample_size:
                dit_over["sample_size"] = args.sample_size
            make_sd3_optimum(out, args.seed + 30, dit_over)
        elif name == "ddpm-plain":
            make_ddpm_plain(out, args.seed + 20)
        elif name == "lcm-optimum":
            make_sd15_optimum(out, args.seed, lcm=True)
            write_lcm_reference(os.path.join(args.out, "lcm-optimum.reference.json"))
        else:
            raise SystemExit(f"unknown fixture {name}")
        print(f"{name}: {folder_bytes(out):,} bytes")


if __name__ == "__main__":
    main()
