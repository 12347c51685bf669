"""Generate the tiny ONNX judges and the preprocessing reference for test/unit/core/eval/judge.test.ts.

Usage: /usr/bin/python3 tools/make_judge_fixtures.py [--out test/fixtures/judges]

Needs onnx and numpy; torch (if importable) cross-checks the resize reference. Weights are seeded random; every graph
is a few ops, so the folder stays small. What each graph stands for:

- clip_vision_proj.onnx: like CLIPVisionModelWithProjection as Optimum exports it: input `pixel_values`
  [batch_size, 3, 16, 16]; outputs `last_hidden_state` [batch_size, 4, 8] (per-patch states, listed first) and
  `image_embeds` [batch_size, 6] (mean of the patch states, projected).
- inception_pool.onnx: like an Inception v3 FID export: input `x` [N, 3, H, W] with dynamic H and W; outputs `y`
  [N, 16] (a head) and `z` [N, 2048, 1, 1] (global average pool, 1x1 conv, ReLU: pool3's shape). Neutral names, so
  the pick falls to the width rule.
- flatten_gray.onnx: input `img` [2, 1, 6, 9] (static batch 2) -> `features` [2, 54]: the features ARE the
  preprocessed image.
- flatten_nhwc.onnx: input `x` [1, 4, 5, 3] (static batch 1, channels last) -> `out` [1, 60], also the image itself.
- spatial_only.onnx: input `x` [N, 3, 8, 8]; outputs `map` [N, 4, 8, 8] and `tokens` [N, 64, 3]: nothing usable.
- vector_input.onnx: input `x` [N, 10] -> `y` [N, 10]: no image input.
- fp16_embed.onnx: input `pixel_values` float16 [N, 3, 4, 4] -> `embeddings` float16 [N, 3] (channel means).

resize_reference.json: images and what the judge's preprocessing must make of them, computed here from the formulas
(dense per-axis weight matrices, BT.601 luma) and checked against torch's antialiased bilinear interpolation.
"""
import argparse
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
F = TensorProto.FLOAT


def save(graph, path, opset=OPSET):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', opset)], producer_name='make_judge_fixtures')
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def init(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def clip_vision_proj(rng):
    # patchify conv 3->8, kernel 8 stride 8: [B,8,2,2] -> [B,8,4] -> [B,4,8]; embeds = mean over patches @ W [8,6]
    w = rng.standard_normal((8, 3, 8, 8)).astype(np.float32) * 0.1
    b = rng.standard_normal(8).astype(np.float32) * 0.1
    proj = rng.standard_normal((8, 6)).astype(np.float32)
    nodes = [
        helper.make_node('Conv', ['pixel_values', 'w', 'b'], ['patches'], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node('Reshape', ['patches', 'shape3'], ['flat']),
        helper.make_node('Transpose', ['flat'], ['last_hidden_state'], perm=[0, 2, 1]),
        helper.make_node('ReduceMean', ['last_hidden_state'], ['pooled'], axes=[1], keepdims=0),
        helper.make_node('MatMul', ['pooled', 'proj'], ['image_embeds']),
    ]
    g = helper.make_graph(
        nodes,
        'clip_vision_proj',
        [helper.make_tensor_value_info('pixel_values', F, ['batch_size', 3, 16, 16])],
        [
            helper.make_tensor_value_info('last_hidden_state', F, ['batch_size', 4, 8]),
            helper.make_tensor_value_info('image_embeds', F, ['batch_size', 6]),
        ],
        [init('w', w), init('b', b), init('proj', proj), init('shape3', np.array([0, 8, 4], dtype=np.int64))],
    )
    return g


def inception_pool(w, b):
    nodes = [
        helper.make_node('GlobalAveragePool', ['x'], ['gap']),
        helper.make_node('Conv', ['gap', 'w', 'b'], ['pre']),
        helper.make_node('Relu', ['pre'], ['z']),
        helper.make_node('Reshape', ['z', 'shape_head'], ['groups']),
        helper.make_node('ReduceMean', ['groups'], ['y'], axes=[2], keepdims=0),
    ]
    return helper.make_graph(
        nodes,
        'inception_pool',
        [helper.make_tensor_value_info('x', F, ['N', 3, 'H', 'W'])],
        [helper.make_tensor_value_info('y', F, ['N', 16]), helper.make_tensor_value_info('z', F, ['N', 2048, 1, 1])],
        [init('w', w), init('b', b), init('shape_head', np.array([0, 16, 128], dtype=np.int64))],
    )


def flatten_gray():
    return helper.make_graph(
        [helper.make_node('Flatten', ['img'], ['features'], axis=1)],
        'flatten_gray',
        [helper.make_tensor_value_info('img', F, [2, 1, 6, 9])],
        [helper.make_tensor_value_info('features', F, [2, 54])],
    )


def flatten_nhwc():
    return helper.make_graph(
        [helper.make_node('Flatten', ['x'], ['out'], axis=1)],
        'flatten_nhwc',
        [helper.make_tensor_value_info('x', F, [1, 4, 5, 3])],
        [helper.make_tensor_value_info('out', F, [1, 60])],
    )


def spatial_only(rng):
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node('Conv', ['x', 'w'], ['map'], pads=[1, 1, 1, 1]),
        helper.make_node('Reshape', ['x', 'shape_tok'], ['t']),
        helper.make_node('Transpose', ['t'], ['tokens'], perm=[0, 2, 1]),
    ]
    return helper.make_graph(
        nodes,
        'spatial_only',
        [helper.make_tensor_value_info('x', F, ['N', 3, 8, 8])],
        [helper.make_tensor_value_info('map', F, ['N', 4, 8, 8]), helper.make_tensor_value_info('tokens', F, ['N', 64, 3])],
        [init('w', w), init('shape_tok', np.array([0, 3, 64], dtype=np.int64))],
    )


def vector_input():
    return helper.make_graph(
        [helper.make_node('Relu', ['x'], ['y'])],
        'vector_input',
        [helper.make_tensor_value_info('x', F, ['N', 10])],
        [helper.make_tensor_value_info('y', F, ['N', 10])],
    )


def fp16_embed():
    return helper.make_graph(
        [helper.make_node('ReduceMean', ['pixel_values'], ['embeddings'], axes=[2, 3], keepdims=0)],
        'fp16_embed',
        [helper.make_tensor_value_info('pixel_values', TensorProto.FLOAT16, ['N', 3, 4, 4])],
        [helper.make_tensor_value_info('embeddings', TensorProto.FLOAT16, ['N', 3])],
    )


def axis_weights(n_in, n_out):
    """Dense [n_out, n_in] weights of the antialiased triangle (bilinear) filter with half-pixel centres."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    m = np.zeros((n_out, n_in))
    for o in range(n_out):
        centre = (o + 0.5) * scale
        for i in range(n_in):
            m[o, i] = max(0.0, 1.0 - abs(i + 0.5 - centre) / support)
        m[o] /= m[o].sum()
    return m


def resize(img, h, w):
    """img [C, H, W] -> [C, h, w]."""
    wy = axis_weights(img.shape[1], h)
    wx = axis_weights(img.shape[2], w)
    return np.stack([wy @ c @ wx.T for c in img])


def torch_resize(img, h, w):
    try:
        import torch
        import torch.nn.functional as tf
    except ImportError:
        return None
    t = torch.from_numpy(img[None].astype(np.float32))
    return tf.interpolate(t, size=(h, w), mode='bilinear', align_corners=False, antialias=True)[0].numpy()


LUMA = np.array([0.299, 0.587, 0.114])


def reference(rng):
    cases = []

    def add(name, img, to_c, h, w, crop=None):
        px = np.clip((img.astype(np.float64) + 1) / 2, 0, 1)
        if to_c == 1 and px.shape[0] == 3:
            px = np.tensordot(LUMA, px, axes=1)[None]
        elif to_c == 3 and px.shape[0] == 1:
            px = np.repeat(px, 3, axis=0)
        src = px if crop is None else px[:, crop[0]:crop[0] + crop[2], crop[1]:crop[1] + crop[3]]
        out = resize(src, h, w)
        ref = torch_resize(src, h, w)
        if ref is not None:
            err = float(np.abs(ref - out).max())
            assert err < 1e-5, f'{name}: torch disagrees by {err}'
            print(f'{name}: torch agrees within {err:.2e}')
        cases.append({
            'name': name,
            'shape': list(img.shape),
            'image': [float(v) for v in img.astype(np.float32).ravel()],
            'channels': to_c,
            'size': [h, w],
            'expected': [float(v) for v in out.ravel()],
        })

    # values a little past [-1, 1] too, to check the clamp
    rgb = rng.uniform(-1.1, 1.1, (3, 10, 14)).astype(np.float32)
    gray = rng.uniform(-1.1, 1.1, (1, 7, 5)).astype(np.float32)
    add('rgb down to gray 4x6', rgb, 1, 4, 6)
    add('rgb up 13x23', rgb, 3, 13, 23)
    add('rgb same size', rgb, 3, 10, 14)
    add('gray up to rgb 9x8', gray, 3, 9, 8)
    add('gray down 3x2', gray, 1, 3, 2)
    # center-crop to a square: 10x14 -> the central 10x10 (columns 2..11)
    add('rgb center-crop 5x5', rgb, 3, 5, 5, crop=(0, 2, 10, 10))
    add('rgb down to gray 6x9', rgb, 1, 6, 9)  # flatten_gray.onnx's input
    add('rgb2 down to gray 6x9', -rgb[:, ::-1, :].copy(), 1, 6, 9)
    add('rgb down 4x5', rgb, 3, 4, 5)  # flatten_nhwc.onnx's input (channels first here)
    return {'about': 'tools/make_judge_fixtures.py: clamp to [-1, 1] -> [0, 1], BT.601 luma or channel repeat, antialiased bilinear resize (half-pixel centres); torch-checked', 'cases': cases}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default='test/fixtures/judges')
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(17)
    save(clip_vision_proj(rng), os.path.join(a.out, 'clip_vision_proj.onnx'))
    w = rng.standard_normal((2048, 3, 1, 1)).astype(np.float32)
    b = rng.standard_normal(2048).astype(np.float32) * 0.1
    save(inception_pool(w, b), os.path.join(a.out, 'inception_pool.onnx'))
    save(flatten_gray(), os.path.join(a.out, 'flatten_gray.onnx'))
    save(flatten_nhwc(), os.path.join(a.out, 'flatten_nhwc.onnx'))
    save(spatial_only(rng), os.path.join(a.out, 'spatial_only.onnx'))
    save(vector_input(), os.path.join(a.out, 'vector_input.onnx'))
    save(fp16_embed(), os.path.join(a.out, 'fp16_embed.onnx'))
    with open(os.path.join(a.out, 'resize_reference.json'), 'w') as f:
        ref = reference(rng)
        # inception_pool.onnx's z for two 3x5x7 images at their own size: relu(W . channel means of the pixels + b)
        imgs = rng.uniform(-1, 1, (2, 3, 5, 7)).astype(np.float32)
        means = ((imgs.astype(np.float64) + 1) / 2).mean(axis=(2, 3))
        z = np.maximum(0, means @ w[:, :, 0, 0].astype(np.float64).T + b)
        ref['inception'] = {'shape': [3, 5, 7], 'images': [[float(v) for v in im.ravel()] for im in imgs], 'z': [[float(v) for v in r] for r in z]}
        json.dump(ref, f, separators=(',', ':'))
        f.write('\n')


if __name__ == '__main__':
    main()
