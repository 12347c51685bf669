#!/usr/bin/env python3
"""Reference trajectories for the samplers in src-main/core/pipeline/schedulers.ts.

An independent float64 numpy implementation written from the formulas of diffusers' schedulers (PNDMScheduler,
DDIMScheduler, DDPMScheduler, EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, DPMSolverMultistepScheduler,
LCMScheduler), structured like them (set_timesteps, then step with internal counters), not like our TypeScript.
It runs each sampler on a few configs with a deterministic fake model and a deterministic noise stream and writes
test/fixtures/schedulers/reference.json, which the unit test replays. Run from the repository root:

    python3 tools/scheduler_reference.py

Only numpy is needed. Deliberate extensions beyond diffusers (marked "extension" below) are the ones our code makes:
PNDM converts an x0 ('sample') prediction to epsilon; Euler Ancestral uses an x0 prediction as x0.
"""
import json
import math
import os

import numpy as np

N_ELEM = 6


def fake_model(x, t):
    """A smooth stand-in for a denoiser: depends on the input and the timestep value."""
    k = np.arange(x.shape[0], dtype=np.float64)
    return 0.1 * x + 0.5 * np.sin(0.013 * float(t) + 0.7 * k)


def noise_draw(d):
    k = np.arange(N_ELEM, dtype=np.float64)
    return np.cos(1.3 * d + 0.7 * k + 0.1)


def initial_noise():
    k = np.arange(N_ELEM, dtype=np.float64)
    return 1.2 * np.sin(2.1 * k + 0.3)


# ----------------------------------------------------------------------------------------------- betas


def make_betas(c):
    T = c["num_train_timesteps"]
    if c.get("trained_betas") is not None:
        b = np.array(c["trained_betas"], dtype=np.float64)
    elif c["beta_schedule"] == "linear":
        b = np.linspace(c["beta_start"], c["beta_end"], T, dtype=np.float64)
    elif c["beta_schedule"] == "scaled_linear":
        b = np.linspace(c["beta_start"] ** 0.5, c["beta_end"] ** 0.5, T, dtype=np.float64) ** 2
    else:
        f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        b = np.array([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)])
    if c.get("rescale_betas_zero_snr"):
        ab = np.sqrt(np.cumprod(1.0 - b))
        a0, aT = ab[0], ab[-1]
        ab = (ab - aT) * (a0 / (a0 - aT))
        bar = ab**2
        alphas = np.concatenate([bar[0:1], bar[1:] / bar[:-1]])
        b = 1 - alphas
    return b


def cumprod_alphas(c):
    return np.cumprod(1.0 - make_betas(c))


def sigma_space_alphas(c):
    ac = cumprod_alphas(c)
    if c.get("rescale_betas_zero_snr"):
        ac[-1] = 2.0**-24
    return ac


def sigma_to_t(sigma, log_sigmas):
    log_sigma = np.log(np.maximum(sigma, 1e-10))
    dists = log_sigma - log_sigmas[:, np.newaxis]
    low_idx = np.cumsum((dists >= 0), axis=0).argmax(axis=0).clip(max=log_sigmas.shape[0] - 2)
    high_idx = low_idx + 1
    low, high = log_sigmas[low_idx], log_sigmas[high_idx]
    w = np.clip((low - log_sigma) / (low - high), 0, 1)
    return ((1 - w) * low_idx + w * high_idx).reshape(np.shape(sigma))


def karras(sigma_min, sigma_max, n):
    ramp = np.linspace(0, 1, n)
    lo, hi = sigma_min ** (1 / 7.0), sigma_max ** (1 / 7.0)
    return (hi + ramp * (lo - hi)) ** 7.0


def np_round(a):
    return np.round(a)  # numpy: half to even


def x0_vp(c, out, x, a):
    p = c["prediction_type"]
    if p == "epsilon":
        return (x - math.sqrt(1 - a) * out) / math.sqrt(a)
    if p == "sample":
        return out.copy()
    return math.sqrt(a) * x - math.sqrt(1 - a) * out


def eps_vp(c, out, x, a):
    p = c["prediction_type"]
    if p == "epsilon":
        return out.copy()
    if p == "sample":
        return (x - math.sqrt(a) * out) / math.sqrt(1 - a)
    return math.sqrt(a) * out + math.sqrt(1 - a) * x


def clipped(c, x0):
    if c.get("clip_sample"):
        r = c.get("clip_sample_range", 1.0)
        return np.clip(x0, -r, r)
    return x0


# ----------------------------------------------------------------------------------------------- schedulers


class RefDDIM:
    """DDIMScheduler, eta 0."""

    def __init__(self, c, n):
        self.c, self.ac = c, cumprod_alphas(c)
        T = c["num_train_timesteps"]
        self.final = 1.0 if c["set_alpha_to_one"] else self.ac[0]
        sp = c["timestep_spacing"]
        if sp == "linspace":
            ts = np_round(np.linspace(0, T - 1, n))[::-1]
        elif sp == "leading":
            ts = (np.arange(0, n) * (T // n)).round()[::-1] + c["steps_offset"]
        else:
            ts = np_round(np.arange(T, 0, -T / n)) - 1
        self.timesteps = ts.astype(np.int64)
        self.n = n
        self.init_noise_sigma = 1.0
        self.scales = [1.0] * len(self.timesteps)

    def step(self, out, i, x, draw):
        t = int(self.timesteps[i])
        prev = t - self.c["num_train_timesteps"] // self.n
        a = self.ac[t]
        ap = self.ac[prev] if prev >= 0 else self.final
        x0 = clipped(self.c, x0_vp(self.c, out, x, a))
        eps = eps_vp(self.c, out, x, a)
        return math.sqrt(ap) * x0 + math.sqrt(1 - ap) * eps


class RefPNDM:
    """PNDMScheduler (PRK warm-up unless skip_prk_steps, then PLMS)."""

    def __init__(self, c, n):
        self.c, self.ac = c, cumprod_alphas(c)
        T = c["num_train_timesteps"]
        self.final = 1.0 if c["set_alpha_to_one"] else self.ac[0]
        self.n = n
        sp = c["timestep_spacing"]
        if sp == "linspace":
            base = np.linspace(0, T - 1, n).round().astype(np.int64)
        elif sp == "leading":
            base = (np.arange(0, n) * (T // n)).round() + c["steps_offset"]
        else:
            base = np.round(np.arange(T, 0, -T / n))[::-1].astype(np.int64) - 1
        if c["skip_prk_steps"]:
            self.prk = np.array([], dtype=np.int64)
            self.plms = np.concatenate([base[:-1], base[-2:-1], base[-1:]])[::-1]
        else:
            prk = np.array(base[-4:]).repeat(2) + np.tile(np.array([0, T // n // 2]), 4)
            self.prk = prk[:-1].repeat(2)[1:-1][::-1]
            self.plms = base[:-3][::-1]
        self.timesteps = np.concatenate([self.prk, self.plms]).astype(np.int64)
        self.counter, self.ets, self.cur_out, self.cur_sample = 0, [], 0, None
        self.init_noise_sigma = 1.0
        self.scales = [1.0] * len(self.timesteps)

    def _eps(self, out, x, t):
        # extension: an x0 ('sample') prediction enters as the epsilon it implies at t
        if self.c["prediction_type"] == "sample":
            a = self.ac[t]
            return (x - math.sqrt(a) * out) / math.sqrt(1 - a)
        return out

    def _prev(self, x, t, tp, mo):
        a = self.ac[t]
        ap = self.ac[tp] if tp >= 0 else self.final
        if self.c["prediction_type"] == "v_prediction":
            mo = a**0.5 * mo + (1 - a) ** 0.5 * x
        num = (ap - a) * mo
        den = a * (1 - ap) ** 0.5 + (a * (1 - a) * ap) ** 0.5
        return (ap / a) ** 0.5 * x - num / den

    def step(self, out, i, x, draw):
        t = int(self.timesteps[i])
        mo = self._eps(out, x, t)
        T = self.c["num_train_timesteps"]
        if self.counter < len(self.prk) and not self.c["skip_prk_steps"]:
            diff = 0 if self.counter % 2 else T // self.n // 2
            tp = t - diff
            t = int(self.prk[self.counter // 4 * 4])
            if self.counter % 4 == 0:
                self.cur_out = self.cur_out + mo / 6
                self.ets.append(mo)
                self.cur_sample = x
            elif self.counter % 4 in (1, 2):
                self.cur_out = self.cur_out + mo / 3
            else:
                mo = self.cur_out + mo / 6
                self.cur_out = 0
            s = self.cur_sample if self.cur_sample is not None else x
            r = self._prev(s, t, tp, mo)
        else:
            tp = t - T // self.n
            if self.counter != 1:
                self.ets = self.ets[-3:]
                self.ets.append(mo)
            else:
                tp = t
                t = t + T // self.n
            e = self.ets
            if len(e) == 1 and self.counter == 0:
                self.cur_sample = x
            elif len(e) == 1 and self.counter == 1:
                mo = (mo + e[-1]) / 2
                x = self.cur_sample
                self.cur_sample = None
            elif len(e) == 2:
                mo = (3 * e[-1] - e[-2]) / 2
            elif len(e) == 3:
                mo = (23 * e[-1] - 16 * e[-2] + 5 * e[-3]) / 12
            else:
                mo = (55 * e[-1] - 59 * e[-2] + 37 * e[-3] - 9 * e[-4]) / 24
            r = self._prev(x, t, tp, mo)
        self.counter += 1
        return r


def euler_spacing(c, n):
    T = c["num_train_timesteps"]
    sp = c["timestep_spacing"]
    if sp == "linspace":
        return np.linspace(0, T - 1, n)[::-1].copy()
    if sp == "leading":
        return (np.arange(0, n) * (T // n)).round()[::-1].astype(np.float64) + c["steps_offset"]
    return np.arange(T, 0, -T / n).round() - 1.0


def euler_init(c, sigmas):
    m = float(np.max(sigmas))
    return m if c["timestep_spacing"] in ("linspace", "trailing") else (m * m + 1) ** 0.5


def euler_x0(c, out, x, sigma):
    p = c["prediction_type"]
    if p == "sample":
        return out  # EulerDiscrete; extension for EulerAncestral
    if p == "epsilon":
        return x - sigma * out
    return out * (-sigma / (sigma**2 + 1) ** 0.5) + x / (sigma**2 + 1)


class RefEuler:
    """EulerDiscreteScheduler, s_churn 0."""

    def __init__(self, c, n):
        self.c = c
        ac = sigma_space_alphas(c)
        train = ((1 - ac) / ac) ** 0.5
        log_sigmas = np.log(train)
        ts = euler_spacing(c, n)
        if c.get("interpolation_type", "linear") == "linear":
            sig = np.interp(ts, np.arange(len(train)), train)
        else:
            sig = np.exp(np.linspace(np.log(train[-1]), np.log(train[0]), n + 1))
        if c.get("use_karras_sigmas"):
            smin = c.get("sigma_min") or sig[-1]
            smax = c.get("sigma_max") or sig[0]
            sig = karras(smin, smax, n)
            ts = np.array([sigma_to_t(s, log_sigmas) for s in sig])
        last = train[0] if c.get("final_sigmas_type", "zero") == "sigma_min" else 0.0
        self.sigmas = np.concatenate([sig, [last]])
        if c.get("timestep_type", "discrete") == "continuous" and c["prediction_type"] == "v_prediction":
            ts = np.array([0.25 * math.log(s) for s in self.sigmas[:-1]])
        self.timesteps = ts
        self.init_noise_sigma = euler_init(c, self.sigmas)
        self.scales = [1 / (s**2 + 1) ** 0.5 for s in self.sigmas[: len(ts)]]

    def step(self, out, i, x, draw):
        s = self.sigmas[i]
        x0 = euler_x0(self.c, out, x, s)
        return x + (x - x0) / s * (self.sigmas[i + 1] - s)


class RefEulerA:
    """EulerAncestralDiscreteScheduler."""

    def __init__(self, c, n):
        self.c = c
        ac = sigma_space_alphas(c)
        train = ((1 - ac) / ac) ** 0.5
        self.timesteps = euler_spacing(c, n)
        self.sigmas = np.concatenate([np.interp(self.timesteps, np.arange(len(train)), train), [0.0]])
        self.init_noise_sigma = euler_init(c, self.sigmas)
        self.scales = [1 / (s**2 + 1) ** 0.5 for s in self.sigmas[:-1]]

    def step(self, out, i, x, draw):
        sf, st = self.sigmas[i], self.sigmas[i + 1]
        x0 = euler_x0(self.c, out, x, sf)
        up = (st**2 * (sf**2 - st**2) / sf**2) ** 0.5
        down = (st**2 - up**2) ** 0.5
        return x + (x - x0) / sf * (down - sf) + draw() * up


class RefDPM:
    """DPMSolverMultistepScheduler, dpmsolver++."""

    def __init__(self, c, n, force_karras=False):
        self.c = c
        ac = sigma_space_alphas(c)
        T = c["num_train_timesteps"]
        alpha_t, sigma_t = np.sqrt(ac), np.sqrt(1 - ac)
        lam = np.log(alpha_t) - np.log(sigma_t)
        lmc = c.get("lambda_min_clipped")
        clipped_idx = int(np.searchsorted(np.flip(lam), -np.inf if lmc is None else lmc))
        last = T - clipped_idx
        sp = c["timestep_spacing"]
        if sp == "linspace":
            ts = np.linspace(0, last - 1, n + 1).round()[::-1][:-1].astype(np.int64)
        elif sp == "leading":
            ts = (np.arange(0, n + 1) * (last // (n + 1))).round()[::-1][:-1].astype(np.int64) + c["steps_offset"]
        else:
            ts = np.arange(last, 0, -T / n).round().astype(np.int64) - 1
        train = ((1 - ac) / ac) ** 0.5
        log_sigmas = np.log(train)
        if force_karras or c.get("use_karras_sigmas"):
            sig = karras(np.flip(train)[-1], np.flip(train)[0], n)
            ts = np.array([sigma_to_t(s, log_sigmas) for s in sig])
            if c["beta_schedule"] != "squaredcos_cap_v2":
                ts = ts.round()
        else:
            sig = np.interp(ts, np.arange(len(train)), train)
        lastsig = train[0] if c.get("final_sigmas_type", "zero") == "sigma_min" else 0.0
        self.sigmas = np.concatenate([sig, [lastsig]])
        self.timesteps = ts
        self.outs = [None, None]
        self.lower = 0
        self.init_noise_sigma = 1.0
        self.scales = [1.0] * len(ts)

    @staticmethod
    def ab(s):
        a = 1 / (s**2 + 1) ** 0.5
        return a, s * a

    def step(self, out, i, x, draw):
        c, n = self.c, len(self.timesteps)
        lof = i == n - 1 and (
            c.get("euler_at_final", False) or (c.get("lower_order_final", True) and n < 15) or c.get("final_sigmas_type", "zero") == "zero"
        )
        a_s, s_s = self.ab(self.sigmas[i])
        p = c["prediction_type"]
        x0 = (x - s_s * out) / a_s if p == "epsilon" else (out if p == "sample" else a_s * x - s_s * out)
        self.outs = [self.outs[1], x0]
        a_t, s_t = self.ab(self.sigmas[i + 1])
        with np.errstate(divide="ignore"):
            lam_t = np.log(a_t) - np.log(s_t)
        lam_s = np.log(a_s) - np.log(s_s)
        h = lam_t - lam_s
        order = c.get("solver_order", 2)
        if order == 1 or self.lower < 1 or lof:
            r = (s_t / s_s) * x - (a_t * (np.exp(-h) - 1.0)) * x0
        else:
            a_s1, s_s1 = self.ab(self.sigmas[i - 1])
            lam_s1 = np.log(a_s1) - np.log(s_s1)
            r0 = (lam_s - lam_s1) / h
            D0, D1 = self.outs[1], (1.0 / r0) * (self.outs[1] - self.outs[0])
            if c.get("solver_type", "midpoint") == "heun":
                r = (s_t / s_s) * x - (a_t * (np.exp(-h) - 1.0)) * D0 + (a_t * ((np.exp(-h) - 1.0) / h + 1.0)) * D1
            else:
                r = (s_t / s_s) * x - (a_t * (np.exp(-h) - 1.0)) * D0 - 0.5 * (a_t * (np.exp(-h) - 1.0)) * D1
        if self.lower < order:
            self.lower += 1
        return r


class RefLCM:
    """LCMScheduler (strength 1)."""

    def __init__(self, c, n):
        self.c, self.ac = c, cumprod_alphas(c)
        T = c["num_train_timesteps"]
        orig = c["original_inference_steps"]
        k = T // orig
        origin = np.asarray(list(range(1, orig + 1))) * k - 1
        origin = origin[::-1].copy()
        idx = np.floor(np.linspace(0, len(origin), num=n, endpoint=False)).astype(np.int64)
        self.timesteps = origin[idx]
        self.init_noise_sigma = 1.0
        self.scales = [1.0] * n

    def step(self, out, i, x, draw):
        t = int(self.timesteps[i])
        tp = int(self.timesteps[i + 1]) if i + 1 < len(self.timesteps) else t
        a, ap = self.ac[t], self.ac[tp]
        st = t * self.c["timestep_scaling"]
        c_skip = 0.5**2 / (st**2 + 0.5**2)
        c_out = st / (st**2 + 0.5**2) ** 0.5
        x0 = clipped(self.c, x0_vp(self.c, out, x, a))
        den = c_out * x0 + c_skip * x
        if i != len(self.timesteps) - 1:
            return ap**0.5 * den + (1 - ap) ** 0.5 * draw()
        return den


class RefFlow:
    """FlowMatchEulerDiscreteScheduler (static shift; set_timesteps as diffusers: the init sigmas shifted, the
    linspace between sigma_max and sigma_min, shifted again; float32 sigmas)."""

    def __init__(self, c, n):
        T = c["num_train_timesteps"]
        shift = c.get("shift", 1.0)
        base = (np.linspace(1, T, T, dtype=np.float32)[::-1] / T).astype(np.float32)
        base = (shift * base / (1 + (shift - 1) * base)).astype(np.float32)
        sig = np.linspace(float(base[0]) * T, float(base[-1]) * T, n) / T
        sig = (shift * sig / (1 + (shift - 1) * sig)).astype(np.float32)
        self.sigmas = np.append(sig.astype(np.float64), 0.0)
        self.timesteps = (sig * np.float32(T)).astype(np.float32).astype(np.float64)
        self.init_noise_sigma = 1.0
        self.scales = [1.0] * n

    def step(self, out, i, x, draw):
        return x + (self.sigmas[i + 1] - self.sigmas[i]) * out


# ----------------------------------------------------------------------------------------------- cases

SD15 = dict(  # runwayml/stable-diffusion-v1-5 scheduler_config.json (PNDMScheduler) with diffusers' filled defaults
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", prediction_type="epsilon",
    set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1, timestep_spacing="leading", clip_sample=False,
)
SDXL = dict(  # SDXL base: EulerDiscreteScheduler, leading spacing, steps_offset 1
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", prediction_type="epsilon",
    set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1, timestep_spacing="leading", interpolation_type="linear",
    use_karras_sigmas=False, clip_sample=False,
)
VPRED = dict(SD15, prediction_type="v_prediction")  # SD 2.x 768-v
TRAILING = dict(SD15, timestep_spacing="trailing", steps_offset=0)
LINSPACE = dict(SD15, timestep_spacing="linspace", steps_offset=0)
ZSNR = dict(SD15, prediction_type="v_prediction", timestep_spacing="trailing", rescale_betas_zero_snr=True, steps_offset=0)
SAMPLE_PRED = dict(
    num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear", prediction_type="sample",
    set_alpha_to_one=True, skip_prk_steps=True, steps_offset=1, timestep_spacing="leading", clip_sample=False,
)
LCM_CFG = dict(  # SimianLuo/LCM_Dreamshaper_v7-like LCMScheduler config
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", prediction_type="epsilon",
    set_alpha_to_one=True, steps_offset=1, timestep_spacing="leading", clip_sample=False, original_inference_steps=50,
    timestep_scaling=10.0,
)

CASES = []


def case(name, sampler, cfg, steps):
    CASES.append((name, sampler, cfg, steps))


for cname, cfg in [("sd15", SD15), ("sdxl", SDXL), ("vpred", VPRED), ("trailing", TRAILING), ("linspace", LINSPACE), ("sample", SAMPLE_PRED)]:
    for steps in (4, 10, 25):
        case(f"pndm/{cname}/{steps}", "pndm", cfg, steps)
        case(f"euler/{cname}/{steps}", "euler", cfg, steps)
        case(f"euler-a/{cname}/{steps}", "euler-a", cfg, steps)
        case(f"dpm++2m/{cname}/{steps}", "dpm++2m", cfg, steps)
        case(f"dpm++2m-karras/{cname}/{steps}", "dpm++2m-karras", cfg, steps)
        case(f"ddim/{cname}/{steps}", "ddim", cfg, steps)
        case(f"lcm/{cname}/{steps}", "lcm", dict(cfg, original_inference_steps=50, timestep_scaling=10.0), steps)
for steps in (1, 2, 4, 8):
    case(f"lcm/lcm/{steps}", "lcm", LCM_CFG, steps)
    case(f"lcm/lcm-orig100/{steps}", "lcm", dict(LCM_CFG, original_inference_steps=100, timestep_scaling=5.0), steps)
# PNDM with the Runge-Kutta warm-up (PNDMScheduler's own default; diffusers needs at least 4 steps for it)
for steps in (4, 5, 10, 25):
    case(f"pndm-prk/sd15/{steps}", "pndm", dict(SD15, skip_prk_steps=False), steps)
for steps in (1, 2, 3):
    case(f"pndm/sd15/{steps}", "pndm", SD15, steps)
    case(f"pndm/trailing/{steps}", "pndm", TRAILING, steps)
    case(f"pndm/vpred/{steps}", "pndm", VPRED, steps)
# zero terminal SNR (v_prediction, trailing)
for s in ("euler", "euler-a", "dpm++2m", "dpm++2m-karras", "ddim", "lcm"):
    case(f"{s}/zsnr/10", s, dict(ZSNR, original_inference_steps=50, timestep_scaling=10.0), 10)
# Euler options: Karras, log-linear, sigma_min end, continuous timesteps, sigma_min/max overrides
case("euler/karras/12", "euler", dict(SDXL, use_karras_sigmas=True), 12)
case("euler/karras-linspace/12", "euler", dict(LINSPACE, use_karras_sigmas=True), 12)
case("euler/karras-bounds/12", "euler", dict(SDXL, use_karras_sigmas=True, sigma_min=0.05, sigma_max=10.0), 12)
case("euler/log_linear/10", "euler", dict(SDXL, interpolation_type="log_linear"), 10)
case("euler/final-sigma-min/10", "euler", dict(SDXL, final_sigmas_type="sigma_min"), 10)
case("euler/continuous-v/10", "euler", dict(VPRED, timestep_type="continuous", timestep_spacing="linspace"), 10)
# DPM-Solver++ options
case("dpm++2m/config-karras/20", "dpm++2m", dict(SD15, use_karras_sigmas=True), 20)
case("dpm++2m/sigma-min-16/16", "dpm++2m", dict(SD15, final_sigmas_type="sigma_min"), 16)
case("dpm++2m/sigma-min-short/8", "dpm++2m", dict(SD15, final_sigmas_type="sigma_min"), 8)
case("dpm++2m/euler-at-final/16", "dpm++2m", dict(SD15, final_sigmas_type="sigma_min", euler_at_final=True), 16)
case("dpm++2m/heun/12", "dpm++2m", dict(SD15, solver_type="heun"), 12)
case("dpm++2m/order1/12", "dpm++2m", dict(SD15, solver_order=1), 12)
case("dpm++2m/lambda-clip/10", "dpm++2m", dict(SD15, timestep_spacing="linspace", beta_schedule="squaredcos_cap_v2", lambda_min_clipped=-5.1), 10)
case("dpm++2m-karras/cosine/10", "dpm++2m-karras", dict(SD15, beta_schedule="squaredcos_cap_v2"), 10)
# DDIM/LCM clip_sample
case("ddim/clip/10", "ddim", dict(SAMPLE_PRED, prediction_type="epsilon", clip_sample=True, clip_sample_range=0.5), 10)
case("lcm/clip/4", "lcm", dict(LCM_CFG, clip_sample=True, clip_sample_range=0.3), 4)
# flow matching (SD3-style FlowMatchEulerDiscreteScheduler, static shift)
FLOW = dict(_class_name="FlowMatchEulerDiscreteScheduler", num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False)
for steps in (1, 4, 28):
    case(f"flow-euler/shift1/{steps}", "flow-euler", FLOW, steps)
    case(f"flow-euler/shift3/{steps}", "flow-euler", dict(FLOW, shift=3.0), steps)


def build(sampler, cfg, steps):
    if sampler == "pndm":
        return RefPNDM(cfg, steps)
    if sampler == "ddim":
        return RefDDIM(cfg, steps)
    if sampler == "euler":
        return RefEuler(cfg, steps)
    if sampler == "euler-a":
        return RefEulerA(cfg, steps)
    if sampler == "dpm++2m":
        return RefDPM(cfg, steps)
    if sampler == "dpm++2m-karras":
        return RefDPM(cfg, steps, force_karras=True)
    if sampler == "lcm":
        return RefLCM(cfg, steps)
    if sampler == "flow-euler":
        return RefFlow(cfg, steps)
    raise ValueError(sampler)


def run(sampler, cfg, steps):
    s = build(sampler, cfg, steps)
    x = initial_noise() * s.init_noise_sigma
    draws = [0]

    def draw():
        z = noise_draw(draws[0])
        draws[0] += 1
        return z

    traj = []
    for i, t in enumerate(s.timesteps):
        xin = x * s.scales[i]
        out = fake_model(xin, t)
        x = s.step(out, i, x, draw)
        traj.append([float(v) for v in x])
    r = {
        "timesteps": [float(t) for t in s.timesteps],
        "init_noise_sigma": float(s.init_noise_sigma),
        "scales": [float(v) for v in s.scales],
        "noise_draws": draws[0],
        "first": traj[0],
        "final": traj[-1],
    }
    if hasattr(s, "sigmas"):
        r["sigmas"] = [float(v) for v in s.sigmas]
    return r


def main():
    out = {
        "about": "tools/scheduler_reference.py: float64 numpy reference from diffusers' scheduler formulas",
        "model": "out = 0.1 * x_in + 0.5 * sin(0.013 * t + 0.7 * k), x_in = scale_model_input(x)",
        "noise": "draw d: cos(1.3 * d + 0.7 * k + 0.1); initial x = 1.2 * sin(2.1 * k + 0.3) * init_noise_sigma",
        "elements": N_ELEM,
        "cases": [],
    }
    for name, sampler, cfg, steps in CASES:
        r = run(sampler, cfg, steps)
        out["cases"].append(dict(name=name, sampler=sampler, config=cfg, steps=steps, **r))
    path = os.path.join("test", "fixtures", "schedulers", "reference.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path}: {len(out['cases'])} cases, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
