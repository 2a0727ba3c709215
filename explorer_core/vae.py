"""A small fully-connected VAE, its neuron importance, its surgery and its image grids.

The generative half of train-time pruning (`train_time.py` drives the loop): the same
schedule that shrinks a classifier's hidden layers shrinks the encoder's and the
decoder's, ranked by importance, at random, or not at all.

Model: `in → enc1 … encK (ReLU) → (mu, logvar)`, `z → dec1 … decK (ReLU) → out`, with
pixels in [0, 1] (the dataset's normalisation undone) and a Bernoulli likelihood, so
the loss per image is BCE summed over pixels + KL(q(z|x) ‖ N(0, I)) — the ELBO of
Kingma & Welling 2014. Hidden neurons are pruned; the latent size and the pixels never.

Noise comes from explicit `torch.Generator`s, never the global RNG, so a seed fixes the
whole run and a branch copied from a shared prefix continues exactly as the original.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .data import Dataset, DatasetInfo, Split
from .errors import Cancelled, ExplorerError
from .models import linear_parameters, memory_guard
from .ranking import select_by_ratio
from .settings import check_parameters

ARCH = "fc_vae"
DEFAULT_HIDDEN = [256]
DEFAULT_LATENT = 20


def check_size(in_features: int, enc_hidden: list[int], latent: int,
               dec_hidden: list[int] | None = None) -> tuple[str, int]:
    """(the VAE for a message, its parameter count) once its widths are whole numbers ≥ 1
    and its size within `settings.MAX_PARAMETERS` (each a one-line ExplorerError), counted
    without building it: what `FCVAE` checks first, and a train-time run before its
    folder is made. `dec_hidden` None mirrors the encoder, as a fresh model does."""
    enc = [int(h) for h in enc_hidden]
    dec = [int(h) for h in (reversed(enc) if dec_hidden is None else dec_hidden)]
    if not enc or not dec:
        raise ExplorerError("the VAE needs at least one hidden layer in encoder and decoder")
    if any(h < 1 for h in enc + dec) or latent < 1 or in_features < 1:
        raise ExplorerError(f"VAE widths must be ≥ 1, got in {in_features}, encoder {enc}, "
                            f"latent {latent}, decoder {dec}")
    chain = [[in_features, *enc, latent], [latent, *dec, in_features]]
    count = sum(linear_parameters(widths) for widths in chain)
    count += linear_parameters([enc[-1], latent])  # logvar beside mu
    what = f"the VAE {'-'.join(map(str, chain[0]))} (decoder {'-'.join(map(str, chain[1]))})"
    return what, check_parameters(count, what)


class FCVAE(nn.Module):
    """Fully connected VAE with layers `enc1…encK, mu, logvar, dec1…decM, out`.

    Encoder and decoder widths are separate lists because pruning shrinks them
    independently; a fresh model mirrors the encoder (`dec_hidden` = reversed `enc_hidden`).
    """

    def __init__(self, in_features: int, enc_hidden: list[int] | tuple[int, ...] = (256,),
                 latent: int = DEFAULT_LATENT, dec_hidden: list[int] | tuple[int, ...] | None = None):
        super().__init__()
        enc = [int(h) for h in enc_hidden]
        dec = [int(h) for h in (reversed(enc) if dec_hidden is None else dec_hidden)]
        what, count = check_size(in_features, enc, latent, dec)
        self.in_features, self.latent = int(in_features), int(latent)
        self.n_enc, self.n_dec = len(enc), len(dec)
        with memory_guard(what, count):
            widths = [self.in_features, *enc]
            for i in range(self.n_enc):
                setattr(self, f"enc{i + 1}", nn.Linear(widths[i], widths[i + 1]))
            self.mu = nn.Linear(enc[-1], self.latent)
            self.logvar = nn.Linear(enc[-1], self.latent)
            widths = [self.latent, *dec]
            for i in range(self.n_dec):
                setattr(self, f"dec{i + 1}", nn.Linear(widths[i], widths[i + 1]))
            self.out = nn.Linear(dec[-1], self.in_features)

    # -- structure
    def encoder_layers(self) -> list[str]:
        return [f"enc{i + 1}" for i in range(self.n_enc)]

    def decoder_layers(self) -> list[str]:
        return [f"dec{i + 1}" for i in range(self.n_dec)]

    def hidden_layers(self) -> list[str]:
        """The prunable layers: every hidden Linear of encoder and decoder."""
        return self.encoder_layers() + self.decoder_layers()

    def consumers(self) -> dict[str, list[str]]:
        """Layer → the layers that read its output (the columns pruning must drop)."""
        enc, dec = self.encoder_layers(), self.decoder_layers()
        out = {name: [nxt] for name, nxt in zip(enc, enc[1:])}
        out[enc[-1]] = ["mu", "logvar"]
        out.update({name: [nxt] for name, nxt in zip(dec, dec[1:])})
        out[dec[-1]] = ["out"]
        return out

    def widths(self) -> dict[str, int]:
        return {n: getattr(self, n).out_features for n in self.hidden_layers()}

    # -- passes
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x.flatten(1)
        for name in self.encoder_layers():
            h = F.relu(getattr(self, name)(h))
        return self.mu(h), self.logvar(h)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        for name in self.decoder_layers():
            h = F.relu(getattr(self, name)(h))
        return self.out(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel means in [0, 1], flat (N, in_features)."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: torch.Tensor, noise: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction logits, mu, logvar); z = mu without a noise generator."""
        mu, logvar = self.encode(x)
        z = mu
        if noise is not None:
            eps = torch.randn(mu.shape, generator=noise, device="cpu").to(mu.device)
            z = mu + eps * torch.exp(0.5 * logvar)
        return self.decode_logits(z), mu, logvar

    @torch.no_grad()
    def hidden_activations(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Post-ReLU output of every hidden layer; the decoder is driven by z = mu."""
        acts: dict[str, torch.Tensor] = {}
        h = x.flatten(1)
        for name in self.encoder_layers():
            h = acts[name] = F.relu(getattr(self, name)(h))
        h = self.mu(h)
        for name in self.decoder_layers():
            h = acts[name] = F.relu(getattr(self, name)(h))
        return acts


def spec_of_vae(model: FCVAE, input_shape: tuple[int, ...] | list[int]) -> dict[str, Any]:
    """JSON-able spec that rebuilds `model` (its current, possibly pruned, widths)."""
    w = model.widths()
    return {"arch": ARCH, "in": model.in_features, "input_shape": [int(v) for v in input_shape],
            "latent": model.latent, "enc_hidden": [w[n] for n in model.encoder_layers()],
            "dec_hidden": [w[n] for n in model.decoder_layers()]}


def build_vae(spec: Mapping[str, Any]) -> FCVAE:
    if not isinstance(spec, Mapping) or spec.get("arch") != ARCH:
        raise ExplorerError(f"not a VAE spec (arch must be {ARCH!r})")
    try:
        return FCVAE(int(spec["in"]), list(spec["enc_hidden"]), int(spec["latent"]),
                     list(spec["dec_hidden"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ExplorerError(f"VAE spec is incomplete or malformed ({exc.__class__.__name__}: "
                            f"{exc})") from None


def load_vae(path) -> tuple[FCVAE, dict[str, Any]]:
    """A VAE saved by `checkpoint.save_checkpoint` (safetensors + JSON; nothing unpickled)."""
    from .checkpoint import read_spec, read_state
    from .models import load_state_strict

    state, meta = read_state(path)
    info = read_spec(path, meta)
    model = build_vae(info["spec"])
    load_state_strict(model, state)
    return model.eval(), info


# ------------------------------------------------------------------ data and loss

def unit_range(split: Split, info: DatasetInfo) -> Split:
    """The split with the dataset's normalisation undone: pixels in [0, 1] (labels kept)."""
    mean = torch.tensor(info.mean, dtype=split.x.dtype, device=split.x.device).view(1, -1, 1, 1)
    std = torch.tensor(info.std, dtype=split.x.dtype, device=split.x.device).view(1, -1, 1, 1)
    return Split((split.x * std + mean).clamp_(0.0, 1.0), split.y)


@dataclass
class VAEData:
    """Train / val / test pixels in [0, 1], made once per run."""
    train: Split
    val: Split
    test: Split
    info: DatasetInfo

    @classmethod
    def from_dataset(cls, data: Dataset) -> "VAEData":
        return cls(unit_range(data.train, data.info), unit_range(data.val, data.info),
                   unit_range(data.test, data.info), data.info)


def elbo_terms(model: FCVAE, x: torch.Tensor, noise: torch.Generator | None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-batch sums of the reconstruction BCE and the KL term (both ≥ 0)."""
    logits, mu, logvar = model(x, noise)
    recon = F.binary_cross_entropy_with_logits(logits, x.flatten(1), reduction="sum")
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return recon, kl


def train_epoch(model: FCVAE, opt: torch.optim.Optimizer, split: Split, batch_size: int,
                order: torch.Generator, noise: torch.Generator, device: torch.device,
                should_stop: Callable[[], bool] | None = None,
                before_step: Callable[[], None] | None = None) -> dict[str, float]:
    """One pass over `split` minimising the mean negative ELBO; returns per-image means."""
    model.train()
    rec_sum = torch.zeros((), dtype=torch.float64, device=device)
    kl_sum = torch.zeros((), dtype=torch.float64, device=device)
    for index in split.index_batches(batch_size, shuffle=True, generator=order):
        if should_stop is not None and should_stop():
            raise Cancelled()
        x = split.x[index].to(device, non_blocking=True)
        recon, kl = elbo_terms(model, x, noise)
        opt.zero_grad(set_to_none=True)
        ((recon + kl) / x.shape[0]).backward()
        if before_step is not None:
            before_step()
        opt.step()
        rec_sum += recon.detach().double()
        kl_sum += kl.detach().double()
    n = max(len(split), 1)
    rec, kl = rec_sum.item() / n, kl_sum.item() / n
    return {"train_loss": rec + kl, "train_recon": rec, "train_kl": kl}


EVAL_NOISE_SEED = 12345


@torch.no_grad()
def evaluate(model: FCVAE, split: Split, batch_size: int = 2048) -> dict[str, float]:
    """Mean reconstruction BCE, KL and their sum per image, with a fixed noise seed.

    The same seed for every evaluation makes the numbers a deterministic function of
    the weights, so curves of different variants differ only where the models do.
    """
    if len(split) == 0:
        return {"loss": float("nan"), "recon": float("nan"), "kl": float("nan")}
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    noise = torch.Generator().manual_seed(EVAL_NOISE_SEED)
    rec = kl = 0.0
    for x, _ in split.batches(batch_size):
        r, k = elbo_terms(model, x.to(device), noise)
        rec += r.item()
        kl += k.item()
    model.train(was)
    n = len(split)
    return {"loss": (rec + kl) / n, "recon": rec / n, "kl": kl / n}


# ------------------------------------------------------------------ importance and surgery

@torch.no_grad()
def contribution_scores(model: FCVAE, x: torch.Tensor, batch_size: int = 512
                        ) -> dict[str, torch.Tensor]:
    """Mean |a_j| × Σ_k |W_kj| over every layer reading neuron j (classifier criterion's VAE twin).

    The last encoder layer feeds both `mu` and `logvar`, so its outgoing weights are
    summed over both; the decoder runs on z = mu. One pass over `x`, all neurons at once.
    """
    consumers = model.consumers()
    out_w = {n: sum(getattr(model, c).weight.detach().abs().sum(0) for c in cs).double()
             for n, cs in consumers.items()}
    sums = {n: torch.zeros(getattr(model, n).out_features, dtype=torch.float64,
                           device=x.device) for n in consumers}
    was = model.training
    model.eval()
    try:
        for i in range(0, x.shape[0], batch_size):
            acts = model.hidden_activations(x[i:i + batch_size])
            for n, a in acts.items():
                sums[n] += a.double().abs().sum(0)
    finally:
        model.train(was)
    n_samples = max(int(x.shape[0]), 1)
    return {n: (sums[n] / n_samples * out_w[n].to(sums[n].device)).float().cpu() for n in sums}


def _weight_scores(criterion: str) -> Callable[..., dict[str, torch.Tensor]]:
    def fn(model: FCVAE, x: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
        from .criteria import CriterionOptions, compute_scores

        return compute_scores(model, criterion, None, model.hidden_layers(),
                              CriterionOptions(seed=seed))
    return fn


# Criteria that make sense for a VAE's hidden neurons: the data-driven contribution
# (own implementation: the encoder fans out to mu and logvar) and the weight norms and
# seeded random scores of the shared registry. Taylor and IASA are defined on a
# classifier's cross-entropy / logits, so they are not offered here.
VAE_CRITERIA: dict[str, Callable[[FCVAE, torch.Tensor, int], dict[str, torch.Tensor]]] = {
    "contribution": lambda model, x, seed: contribution_scores(model, x),
    "l1": _weight_scores("l1"),
    "l2": _weight_scores("l2"),
    "random": _weight_scores("random"),
}


def check_criterion(name: str) -> str:
    if name not in VAE_CRITERIA:
        raise ExplorerError(f"criterion {name!r} is not available for the VAE; choose one of "
                            f"{', '.join(c for c in VAE_CRITERIA if c != 'random')}")
    return name


@torch.no_grad()
def prune_vae(model: FCVAE, keep: Mapping[str, torch.Tensor | list[int]]) -> FCVAE:
    """A new, smaller VAE keeping the given neurons of each hidden layer.

    Row j of a hidden layer and column j of every layer reading it go together; layers
    missing from `keep` keep all neurons. One pass over the layers, no per-neuron loops.
    """
    layers = model.hidden_layers()
    unknown = [k for k in keep if k not in layers]
    if unknown:
        raise ExplorerError(f"unknown VAE layer {unknown[0]!r}; hidden layers: {', '.join(layers)}")
    rows: dict[str, torch.Tensor] = {}
    for name in layers:
        n = getattr(model, name).out_features
        if name in keep:
            idx = torch.as_tensor(keep[name], dtype=torch.long).flatten()
            if idx.numel() == 0 or idx.min() < 0 or idx.max() >= n or \
                    torch.unique(idx).numel() != idx.numel():
                raise ExplorerError(f"VAE layer {name}: kept indices must be 1–{n} distinct "
                                    f"indices below {n}")
            rows[name] = idx
    producer = {c: n for n, cs in model.consumers().items() for c in cs}
    w = model.widths()
    new_w = {n: rows[n].numel() if n in rows else w[n] for n in layers}
    new = FCVAE(model.in_features, [new_w[n] for n in model.encoder_layers()], model.latent,
                [new_w[n] for n in model.decoder_layers()])
    device = model.mu.weight.device
    new.to(device=device, dtype=model.mu.weight.dtype)
    for name, lin in model.named_children():
        weight, bias = lin.weight, lin.bias
        if name in rows:
            r = rows[name].to(device)
            weight, bias = weight.index_select(0, r), bias.index_select(0, r)
        src = producer.get(name)
        if src in rows:
            weight = weight.index_select(1, rows[src].to(device))
        target = getattr(new, name)
        target.weight.copy_(weight)
        target.bias.copy_(bias)
    new.train(model.training)
    return new


def prune_by_ratio(model: FCVAE, criterion: str, ratio: float, calibration: torch.Tensor,
                   seed: int) -> tuple[FCVAE, dict[str, torch.Tensor]]:
    """Remove `ratio` of each hidden layer's neurons, lowest scores first (rank-based).

    Returns the smaller model and the kept neuron indices per layer (to replay the same
    surgery on the optimiser's state). Each layer keeps `max(1, round((1 - ratio)·n))`
    neurons, the same count whatever the criterion, so importance and random pruning
    remove exactly as many neurons.
    """
    scores = VAE_CRITERIA[check_criterion(criterion)](model, calibration, seed)
    kept = select_by_ratio(scores, ratio)
    return prune_vae(model, kept), kept


# ------------------------------------------------------------------ image grids

def image_grid(images: torch.Tensor, shape: tuple[int, ...] | list[int], columns: int,
               cell: int = 56, pad: int = 2):
    """A PIL image tiling flat [0, 1] images (N, C·H·W) row by row, upscaled to `cell` px.

    Tiny images (Digits are 8×8) are enlarged with nearest-neighbour so pixels stay
    visible; 1 channel gives a grey image, 3 channels RGB.
    """
    from PIL import Image

    c, h, w = (int(v) for v in shape)
    n = images.shape[0]
    rows = max(1, math.ceil(n / columns))
    scale = max(1, cell // max(h, w))
    ch, cw = h * scale, w * scale
    imgs = images.detach().float().cpu().clamp(0, 1).reshape(n, c, h, w)
    imgs = imgs.repeat_interleave(scale, 2).repeat_interleave(scale, 3)
    canvas = torch.ones(c, rows * (ch + pad) + pad, columns * (cw + pad) + pad)
    for i in range(n):  # one paste per image (tens of images), not per pixel
        r, col = divmod(i, columns)
        canvas[:, pad + r * (ch + pad):pad + r * (ch + pad) + ch,
               pad + col * (cw + pad):pad + col * (cw + pad) + cw] = imgs[i]
    arr = (canvas * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(arr[:, :, 0] if c == 1 else arr, mode="L" if c == 1 else "RGB")


def png_bytes(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@torch.no_grad()
def reconstruction_grid(model: FCVAE, x: torch.Tensor, shape, columns: int = 8):
    """Originals (odd rows) above their reconstructions (even rows), `columns` per row."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    recon = torch.sigmoid(model(x.to(device))[0]).cpu()
    model.train(was)
    flat = x.flatten(1).cpu()
    rows = []
    for i in range(0, x.shape[0], columns):
        rows += [flat[i:i + columns], recon[i:i + columns]]
    return image_grid(torch.cat(rows), shape, columns)


@torch.no_grad()
def sample_grid(model: FCVAE, shape, n: int = 32, columns: int = 8, seed: int = 0):
    """Decoded draws z ~ N(0, I); a fixed seed gives every variant the same z."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    z = torch.randn(n, model.latent, generator=torch.Generator().manual_seed(seed)).to(device)
    images = model.decode(z).cpu()
    model.train(was)
    return image_grid(images, shape, columns)
