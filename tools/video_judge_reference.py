"""Write the fixture that checks the TypeScript video judge (src-main/core/eval/video-judge.ts) against the Python
one (tools/video_data.py read_videos, with the embedded MNIST classifier as tools/train_tiny_t2i.py loads it).

Usage: /usr/bin/python3 tools/video_judge_reference.py [--out test/fixtures/video-judge]

Writes videos.u8 (uint8 [N, F, 3, 32, 32], round(255 v) of frames in [0, 1]), judge.json (what each video was
made from and what the Python judge reads from videos.u8: per frame digit, colours and centre; per video motion and
speed) and attributes.json (tiny-video's). Videos: held-out digits moving in each direction; then a still digit, a
slow one (a pixel every three frames), one drifting down half as fast as it moves right, one whose colours change half way, one that
jumps back, a noisy one and one faded to half contrast.
"""
import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import t2i_data  # noqa: E402
import train_tiny_t2i as T2I  # noqa: E402
import video_data  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(T2I.ROOT, "test", "fixtures", "video-judge"))
    args = ap.parse_args()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(7)
    ds = video_data.MovingDigits("test")
    n_clean = 16
    frames, _, digit, fg, bg, motion = ds.batch(n_clean, g, dropout=0.0)
    made = [{"digit": int(digit[i]), "fg": t2i_data.COLOURS[int(fg[i])], "bg": t2i_data.COLOURS[int(bg[i])],
             "motion": video_data.DIRECTIONS[int(motion[i])], "made": "clean"} for i in range(n_clean)]
    vids = [(frames[i] + 1) / 2 for i in range(n_clean)]
    base = ds.gray[:7]
    pad = torch.nn.functional.pad(base, (t2i_data.PAD,) * 4)

    def colour(m, f, b):
        return m * t2i_data.RGB[f][:, None, None] + (1 - m) * t2i_data.RGB[b][:, None, None]

    def clip_video(fn, label, i, f=2, b=4):
        frames = torch.stack([colour(fn(k), f, b) for k in range(video_data.FRAMES)])
        vids.append(frames.clamp(0, 1))
        made.append({"digit": int(ds.digit[i]), "fg": t2i_data.COLOURS[f], "bg": t2i_data.COLOURS[b], "motion": None, "made": label})

    half = video_data.FRAMES // 2
    clip_video(lambda k: pad[0], "still", 0)
    clip_video(lambda k: torch.roll(pad[1], shifts=((k - half) // 3,), dims=(2,)), "slow: a pixel every three frames", 1)
    clip_video(lambda k: torch.roll(pad[2], shifts=((k - half) // 2, k - half), dims=(1, 2)), "right, drifting down half as fast", 2)
    frames_cc = torch.stack([colour(torch.roll(pad[3], shifts=(k - half,), dims=(2,)), 2 if k < half else 3, 4) for k in range(video_data.FRAMES)])
    vids.append(frames_cc)
    made.append({"digit": int(ds.digit[3]), "fg": "red", "bg": "blue", "motion": "right", "made": "colour changes half way (red, then green)"})
    clip_video(lambda k: torch.roll(pad[4], shifts=((k - half) if k < 6 else -4,), dims=(2,)), "jumps back at frame 6", 4)
    noisy = torch.stack([colour(torch.roll(pad[5], shifts=(-(k - half),), dims=(2,)), 5, 0) for k in range(video_data.FRAMES)])
    vids.append((noisy + 0.08 * torch.randn(noisy.shape, generator=g)).clamp(0, 1))
    made.append({"digit": int(ds.digit[5]), "fg": "yellow", "bg": "black", "motion": "left", "made": "noise sd 0.08"})
    faded = torch.stack([colour(0.5 * torch.roll(pad[6], shifts=(k - half,), dims=(1,)), 6, 1) for k in range(video_data.FRAMES)])
    vids.append(faded)
    made.append({"digit": int(ds.digit[6]), "fg": "cyan", "bg": "white", "motion": "down", "made": "half contrast"})
    u8 = (torch.stack(vids) * 255).round().clamp(0, 255).to(torch.uint8)
    r = video_data.read_videos(T2I.load_classifier(), u8.float() / 255)
    names = t2i_data.COLOURS
    out = []
    for i in range(u8.shape[0]):
        out.append({"made_from": made[i], "judge": {
            "digit": r["digit"][i].tolist(), "fg": [names[int(v)] if v >= 0 else None for v in r["fg"][i].tolist()],
            "bg": [names[int(v)] for v in r["bg"][i].tolist()], "cx": r["cx"][i].tolist(), "cy": r["cy"][i].tolist(),
            "motion": video_data.DIRECTIONS[int(r["motion"][i])] if int(r["motion"][i]) >= 0 else None,
            "speed": float(r["speed"][i])}})
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "videos.u8"), "wb") as f:
        f.write(u8.numpy().tobytes())
    with open(os.path.join(args.out, "judge.json"), "w") as f:
        json.dump({"shape": list(u8.shape), "videos": out}, f, indent=1)
        f.write("\n")
    attrs = video_data.attributes("tiny-video's judge constants (tools/video_data.py)")
    with open(os.path.join(args.out, "attributes.json"), "w") as f:
        json.dump(attrs, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"{u8.shape[0]} videos -> {args.out}; motions {[o['judge']['motion'] for o in out]}")


if __name__ == "__main__":
    main()
