"""Generate the random-weight text-to-video fixture (test/fixtures/video-unet3d, about 1.8 MB): diffusers'
TextToVideoSDPipeline layout with a UNet3DConditionModel (tools/train_tiny_video.py's, at reduced width: every
temporal layer initialised at random, not at zero, so that the frames really are mixed), and sd15-optimum's
tokenizer, text encoder, VAE and scheduler (the same files). model_index.json names no default_frames, so the
pipeline samples diffusers' 16 frames unless told otherwise. For structure and speed tests, not quality.

Usage (Debian: apt-get install -y python3-torch python3-onnx python3-regex):
  /usr/bin/python3 tools/make_video_fixture.py [--out test/fixtures/video-unet3d]
"""
import argparse
import json
import os
import shutil
import sys

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train_tiny_t2i as T2I  # noqa: E402
import train_tiny_video as TV  # noqa: E402

SRC = os.path.join(T2I.ROOT, "test", "fixtures", "sd15-optimum")
WIDTHS = {"block_out_channels": [8, 16], "layers_per_block": 1, "attention_head_dim": 2, "norm_num_groups": 2}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(T2I.ROOT, "test", "fixtures", "video-unet3d"))
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    with open(os.path.join(SRC, "text_encoder", "config.json")) as f:
        ctx = json.load(f)["hidden_size"]
    unet = TV.UNet3DConditionModel(T2I.UNet2DConditionModel(ctx, WIDTHS), WIDTHS).eval()
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if ("conv4" in name or "proj_out" in name) and ("temp_" in name or "transformer_in" in name):
                nn.init.normal_(p, std=0.05)
    out = args.out
    if os.path.isdir(out):
        shutil.rmtree(out)
    for sub in ("tokenizer", "text_encoder", "vae_encoder", "vae_decoder", "scheduler"):
        shutil.copytree(os.path.join(SRC, sub), os.path.join(out, sub))
    T2I.write_json(os.path.join(out, "model_index.json"), {
        "_class_name": "TextToVideoSDPipeline", "_diffusers_version": T2I.DIFFUSERS_VERSION,
        "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet3DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"]})
    T2I.write_json(os.path.join(out, "unet", "config.json"), TV.unet3d_config(ctx, WIDTHS, sample_size=8))
    dims = {0: "batch_size", 2: "num_frames", 3: "height", 4: "width"}
    T2I.onnx_export(unet, (torch.randn(2, 4, 4, 8, 8), torch.tensor(981.0), torch.randn(2, 77, ctx)),
                    os.path.join(out, "unet", "model.onnx"), ["sample", "timestep", "encoder_hidden_states"], ["out_sample"],
                    {"sample": dims, "encoder_hidden_states": {0: "batch_size", 1: "sequence_length"}, "out_sample": dims})
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    print(f"{out}: UNet3D {T2I.nparams(unet):,} parameters, {size:,} bytes")


if __name__ == "__main__":
    main()
