"""Keyword-based swap training of CDFNet (SPEC §5, paper §3.4).

Each step: draw 2·B latents from the generator's mapping network (no dataset, no labels),
draw one keyword, split both halves with CDFNet, swap their key features, fuse, render
I = G(s) and I′ = G(s′), and minimise L_IOS (keyword identity) or L_AOS (any other keyword).
The generator, the identity network and CLIP are frozen; gradients reach CDFNet (and the
keyword embeddings when asked) through the swapped images.

Checkpoints (``OUT/checkpoints/step-NNNNNNNN/``) hold everything a bit-for-bit continuation
needs, as safetensors + JSON: CDFNet weights and keyword embeddings, Adam's state, the state
of every random generator, the held-out batch, and the effective configuration.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..method import keywords as kw
from .config import RESUME_OVERRIDABLE, TrainingConfig
from . import losses as L

__all__ = ["SwapTrainer", "StepResult", "LOG_COLUMNS", "RoundTripWarning", "latest_checkpoint",
           "roundtrip_error"]

#: Columns of the CSV log; a term a step's objective does not use is left empty.
LOG_COLUMNS = ("step", "keyword", "mode", "total", "L_I", "L_I_prime", "L_p", "L_s", "L_f",
               "L_r", "roundtrip_error", "seconds_per_step")
TERMS = ("L_I", "L_I_prime", "L_p", "L_s", "L_f", "L_r")


class RoundTripWarning(UserWarning):
    """CDFNet no longer inverts itself to the tolerance (float32 affine couplings drift)."""


@dataclass
class StepResult:
    """One step's objective: the keyword, "IOS" or "AOS", the total and each term."""

    step: int
    keyword: str
    mode: str
    total: float
    terms: dict[str, float] = field(default_factory=dict)


def roundtrip_error(cdfnet: nn.Module, codes: Tensor, conditions: Tensor) -> float:
    """max |CDFNet⁻¹(CDFNet(s, k), k) − (0, s)| over the codes and every condition row."""
    worst = 0.0
    with torch.no_grad():
        for k in conditions:
            f, r = cdfnet(codes, k)
            delta, s_hat = cdfnet.inverse(f, r, k)
            worst = max(worst, float(delta.abs().max()), float((s_hat - codes).abs().max()))
    return worst


def latest_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder itself, or the newest one under RUN/checkpoints or RUN."""
    path = Path(path)
    if (path / "state.json").is_file():
        return path
    for folder in (path / "checkpoints", path):
        found = sorted(folder.glob("step-*/state.json")) if folder.is_dir() else []
        if found:
            return found[-1].parent
    raise FileNotFoundError(f"no training checkpoint in {path} (expected a step-NNNNNNNN "
                            f"folder with state.json)")


def _generator_state(g: torch.Generator) -> Tensor:
    return g.get_state().clone()


class SwapTrainer:
    """Trains a bundle's CDFNet by keyword-based swapping.

    Args:
        model: the ``LReOrg`` bundle whose CDFNet (and keyword embeddings) is trained.
        generator: the StyleGAN2 generator G (frozen); its mapping network makes the latents.
        identity_encoder: ``IdentityEncoder`` ρ (frozen): embeddings for L_I / L_I′,
            feature maps for L_p.
        clip: ``KeywordEncoder`` (frozen): zero-shot D(I, t_j) for L_s.
        config: the ``TrainingConfig``.
        device: where everything runs (default: the config's; "auto" = cuda if available).
        reset_cdfnet: redraw CDFNet's initial weights from the run's seed (a fresh run;
            the network is the identity map either way).
    """

    def __init__(self, model, generator, identity_encoder, clip, config: TrainingConfig,
                 device: str | torch.device | None = None, reset_cdfnet: bool = False):
        self.config = config
        device = config.device if device is None else device
        if str(device) == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.generator = generator.to(self.device)
        self.identity_encoder = identity_encoder.to(self.device)
        self.clip = clip.to(self.device)
        for frozen in (self.generator, self.identity_encoder, self.clip):
            frozen.eval()
            for p in frozen.parameters():
                p.requires_grad_(False)
        self.cdfnet = self.model.cdfnet.train()
        if self.cdfnet.latent_dim != self.generator.style_dim or \
                self.cdfnet.num_rows != self.generator.n_latent:
            raise ValueError(f"CDFNet works on ({self.cdfnet.num_rows}, "
                             f"{self.cdfnet.latent_dim}) codes but the generator's W+ codes "
                             f"are ({self.generator.n_latent}, {self.generator.style_dim})")
        names = config.keywords if config.keywords is not None else list(self.model.keywords)
        if not names:
            raise ValueError("training needs at least one keyword")
        self.keywords = [kw.get(n, self.model.keywords).name for n in names]
        if len(set(self.keywords)) != len(self.keywords):
            raise ValueError(f"keywords must be unique, got {self.keywords}")
        self._keyword_rows = torch.tensor([self.model.keywords.index(n) for n in self.keywords])

        # One seed (or OS entropy) for every draw of the run. The keyword draw is on the CPU;
        # latents are drawn on the generator's device, where they are used.
        base = torch.Generator()
        if config.seed is None:
            base.seed()
        else:
            base.manual_seed(int(config.seed))
        child = lambda: int(torch.randint(2 ** 62, (1,), generator=base))  # noqa: E731
        self.init_rng = torch.Generator().manual_seed(child())
        self.keyword_rng = torch.Generator().manual_seed(child())
        self.latent_rng = torch.Generator(device=self.device).manual_seed(child())
        heldout_rng = torch.Generator(device=self.device).manual_seed(child())
        if reset_cdfnet:
            self.cdfnet.reset_parameters(self.init_rng, config.init_output_std)

        if config.train_keyword_embeddings:
            self.embeddings = nn.Parameter(self.model.keyword_embeddings.detach().clone())
        else:
            self.embeddings = self.model.keyword_embeddings
        params = list(self.cdfnet.parameters())
        if config.train_keyword_embeddings:
            params.append(self.embeddings)
        for p in params:
            p.requires_grad_(True)
        self.optimizer = torch.optim.Adam(params, lr=config.lr, betas=config.betas)
        self._autocast = config.mixed_precision == "bf16"
        with torch.no_grad():
            self.heldout = self._rows(self.generator.sample_w(config.heldout_size,
                                                              generator=heldout_rng))
        self.step = 0
        self.last_roundtrip: float | None = None

    # -- pieces of a step ----------------------------------------------------------------
    def _rows(self, w: Tensor) -> Tensor:
        return w.unsqueeze(1).expand(-1, self.generator.n_latent, -1).contiguous()

    def sample_pairs(self) -> tuple[Tensor, Tensor]:
        """s₁, s₂: W codes from the mapping network, broadcast to every W+ row."""
        with torch.no_grad():
            w = self.generator.sample_w(2 * self.config.batch_size, generator=self.latent_rng)
        s = self._rows(w)
        return s[: self.config.batch_size], s[self.config.batch_size:]

    def sample_keyword(self) -> str:
        return self.keywords[int(torch.randint(len(self.keywords), (1,),
                                               generator=self.keyword_rng))]

    def condition(self, keyword: str) -> Tensor:
        return self.embeddings[self.model.keywords.index(keyword)]

    def render(self, codes: Tensor) -> Tensor:
        """I = G(s) resized to ``image_size`` (antialiased bilinear, differentiable)."""
        images = self.generator(codes, noise_mode=self.config.noise_mode,
                                output_size=self.config.generator_output_size)
        size = self.config.image_size
        if images.shape[-1] != size:
            images = F.interpolate(images, size=(size, size), mode="bilinear",
                                   align_corners=False, antialias=True)
        return images

    def _score(self, codes: Tensor, keyword: str) -> tuple[Tensor, ...]:
        """Render and score: (identity embedding, *feature maps) or (embedding, probs)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self._autocast):
            images = self.render(codes)
            embedding, features = self.identity_encoder.embed_and_features(images)
            if keyword == kw.IDENTITY:
                out = (embedding, *features)
            else:
                out = (embedding, self.clip.zero_shot(images, keyword))
        return tuple(t.float() for t in out)

    def _score_swapped(self, codes: Tensor, keyword: str) -> tuple[Tensor, ...]:
        if not self.config.gradient_checkpointing:
            return self._score(codes, keyword)
        # One recomputed segment per half of the batch: the generator's activations for only
        # half the swapped images are alive at once in the backward pass.
        halves = [checkpoint(self._score, c, keyword, use_reentrant=False)
                  for c in codes.chunk(2)]
        return tuple(torch.cat(parts) for parts in zip(*halves))

    def losses(self, keyword: str, s1: Tensor, s2: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The step objective for a keyword and a batch of pairs: (total, terms)."""
        cond = self.condition(keyword)
        f, r = self.cdfnet(torch.cat([s1, s2]), cond)
        f1, f2 = f.chunk(2)
        # s₁′ = CDFNet⁻¹(f₂, r₁), s₂′ = CDFNet⁻¹(f₁, r₂), in one batch.
        delta, swapped = self.cdfnet.inverse(torch.cat([f2, f1]), r, cond)
        dr1, dr2 = delta.chunk(2)
        s1_sw, s2_sw = swapped.chunk(2)
        with torch.no_grad():
            original = self._score(torch.cat([s1, s2]), keyword)
        moved = self._score_swapped(swapped, keyword)
        o1, o2 = zip(*(t.chunk(2) for t in original))
        m1, m2 = zip(*(t.chunk(2) for t in moved))
        terms = {"L_f": L.latent_loss(s1, s2, s1_sw, s2_sw),
                 "L_r": L.information_loss(dr1, dr2)}
        if keyword == kw.IDENTITY:
            terms["L_I"] = L.identity_swap_loss(o1[0], o2[0], m1[0], m2[0])
            terms["L_p"] = L.perceptual_loss(o1[1:], o2[1:], m1[1:], m2[1:])
            total = L.identity_oriented_loss(terms["L_I"], terms["L_p"], terms["L_f"],
                                             terms["L_r"], self.config.ios)
        else:
            terms["L_I_prime"] = L.identity_preservation_loss(o1[0], o2[0], m1[0], m2[0])
            terms["L_s"] = L.attribute_swap_loss(o1[1], o2[1], m1[1], m2[1])
            total = L.attribute_oriented_loss(terms["L_I_prime"], terms["L_s"], terms["L_f"],
                                              terms["L_r"], self.config.aos)
        return total, terms

    def evaluate(self, keyword: str, s1: Tensor, s2: Tensor) -> StepResult:
        """The objective on given pairs, without a gradient or an update (for monitoring)."""
        with torch.no_grad():
            total, terms = self.losses(kw.get(keyword, self.model.keywords).name, s1, s2)
        return StepResult(self.step, keyword, _mode(keyword), float(total),
                          {k: float(v) for k, v in terms.items()})

    def train_step(self) -> StepResult:
        """One keyword-based swap step (sample, swap, fuse, render, score, update)."""
        keyword = self.sample_keyword()
        s1, s2 = self.sample_pairs()
        total, terms = self.losses(keyword, s1, s2)
        if not torch.isfinite(total):
            raise FloatingPointError(f"step {self.step + 1}: the {keyword} objective is "
                                     f"{float(total)}; lower lr or check the scorers")
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        self.step += 1
        return StepResult(self.step, keyword, _mode(keyword), float(total.detach()),
                          {k: float(v.detach()) for k, v in terms.items()})

    def measure_roundtrip(self) -> float:
        """max |CDFNet⁻¹(CDFNet(s)) − (0, s)| on the held-out batch, over every keyword."""
        self.last_roundtrip = roundtrip_error(self.cdfnet, self.heldout,
                                              self.embeddings.detach()[self._keyword_rows])
        return self.last_roundtrip

    # -- the loop ------------------------------------------------------------------------
    def fit(self, steps: int | None = None) -> list[StepResult]:
        """Train until ``steps`` (default: the config's) steps are done, with progress bar,
        CSV log, optional TensorBoard, round-trip checks and periodic checkpoints."""
        from tqdm.auto import tqdm

        cfg = self.config
        target = cfg.steps if steps is None else int(steps)
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        log_path = out / "log.csv"
        self._trim_log(log_path)
        new_log = not log_path.is_file()
        board = self._tensorboard(out) if cfg.tensorboard else None
        history: list[StepResult] = []
        running: dict[str, float] = {}
        bar = tqdm(total=target, initial=self.step, desc="swap training", unit="step",
                   disable=not cfg.progress, dynamic_ncols=True)
        with log_path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=LOG_COLUMNS)
            if new_log:
                writer.writeheader()
            tic = time.perf_counter()
            while self.step < target:
                result = self.train_step()
                history.append(result)
                for name, value in (("total", result.total), *result.terms.items()):
                    running[name] = value if name not in running else \
                        0.9 * running[name] + 0.1 * value
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == target:
                    seconds = (time.perf_counter() - tic) / max(1, len(history))
                    err = self.measure_roundtrip()
                    if err > cfg.roundtrip_warn:
                        message = (f"step {self.step}: CDFNet round-trip error {err:.3g} > "
                                   f"{cfg.roundtrip_warn:g} on the held-out batch: it is no "
                                   f"longer exactly invertible (lower lr, or stop here)")
                        warnings.warn(message, RoundTripWarning, stacklevel=2)
                        bar.write(f"warning: {message}")
                    writer.writerow({"step": self.step, "keyword": result.keyword,
                                     "mode": result.mode, "total": f"{result.total:.6g}",
                                     **{t: (f"{result.terms[t]:.6g}" if t in result.terms
                                            else "") for t in TERMS},
                                     "roundtrip_error": f"{err:.3g}",
                                     "seconds_per_step": f"{seconds:.4g}"})
                    fh.flush()
                    if board is not None:
                        board.add_scalar(f"{result.mode}/total", result.total, self.step)
                        for t, v in result.terms.items():
                            board.add_scalar(f"{result.mode}/{t}", v, self.step)
                        board.add_scalar("roundtrip_error", err, self.step)
                    bar.set_postfix({k: f"{v:.3g}" for k, v in running.items()}
                                    | {"roundtrip": f"{err:.1e}"})
                if self.step % cfg.checkpoint_every == 0 or self.step == target:
                    self.save_checkpoint()
        bar.close()
        if board is not None:
            board.close()
        return history

    @staticmethod
    def _tensorboard(out: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # tensorboard is optional
            raise RuntimeError("tensorboard=true needs the tensorboard package (pip install "
                               "tensorboard); the CSV log needs nothing") from e
        return SummaryWriter(str(out / "tensorboard"))

    def _trim_log(self, log_path: Path) -> None:
        """After a resume, drop log rows past the checkpoint (they will be written again)."""
        if not log_path.is_file():
            return
        with log_path.open(newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= self.step]
        with log_path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=LOG_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    # -- checkpoints -----------------------------------------------------------------------
    def _sync_embeddings(self) -> None:
        if isinstance(self.embeddings, nn.Parameter):
            self.model.set_keyword_embeddings(self.embeddings.detach())

    def save_checkpoint(self, directory: str | Path | None = None) -> Path:
        """Write weights, optimizer and RNG state (safetensors) and plain values (JSON)."""
        if directory is None:
            directory = Path(self.config.out) / "checkpoints" / f"step-{self.step:08d}"
        directory = Path(directory)
        tmp = directory.with_name(directory.name + ".partial")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        self._sync_embeddings()
        weights = {f"cdfnet.{k}": v.detach().contiguous().cpu()
                   for k, v in self.cdfnet.state_dict().items()}
        weights["keyword_embeddings"] = self.embeddings.detach().contiguous().cpu()
        save_file(weights, str(tmp / "weights.safetensors"))
        opt = self.optimizer.state_dict()
        tensors = {"rng.keyword": _generator_state(self.keyword_rng),
                   "rng.latent": _generator_state(self.latent_rng).cpu(),
                   "heldout": self.heldout.detach().contiguous().cpu()}
        for index, state in opt["state"].items():
            for name, value in state.items():
                tensors[f"optimizer.{index}.{name}"] = value.detach().contiguous().cpu()
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        plain = {"step": self.step, "keywords": self.keywords,
                 "optimizer_param_groups": [{k: (list(v) if isinstance(v, tuple) else v)
                                             for k, v in g.items()}
                                            for g in opt["param_groups"]],
                 "latent_rng_device": self.latent_rng.device.type,
                 "roundtrip_error": self.last_roundtrip,
                 "bundle_config": self.model.get_config()}
        (tmp / "state.json").write_text(json.dumps(plain, indent=2))
        (tmp / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2))
        if directory.exists():
            shutil.rmtree(directory)
        tmp.rename(directory)  # a crash mid-write never leaves a half checkpoint behind
        self._prune(directory.parent)
        return directory

    def _prune(self, folder: Path) -> None:
        old = sorted(folder.glob("step-*[0-9]"))[: -self.config.keep_checkpoints]
        for path in old:
            shutil.rmtree(path)

    def load_checkpoint(self, path: str | Path) -> Path:
        """Continue from a checkpoint: weights, Adam state, RNG states, held-out batch, step.

        The checkpoint's configuration must equal this trainer's except for
        ``RESUME_OVERRIDABLE`` values (steps, logging, output), or the continuation would not
        be the same computation.
        """
        directory = latest_checkpoint(path)
        saved = TrainingConfig.from_dict(json.loads((directory / "config.json").read_text()))
        mine, theirs = self.config.to_dict(), saved.to_dict()
        changed = sorted(k for k in mine if k not in RESUME_OVERRIDABLE and mine[k] != theirs[k])
        if changed:
            raise ValueError(f"cannot resume from {directory}: the configuration differs in "
                             f"{', '.join(changed)} (only {', '.join(RESUME_OVERRIDABLE)} may "
                             f"change when resuming)")
        plain = json.loads((directory / "state.json").read_text())
        weights = load_file(str(directory / "weights.safetensors"))
        self.cdfnet.load_state_dict({k[len("cdfnet."):]: v for k, v in weights.items()
                                     if k.startswith("cdfnet.")}, strict=True)
        with torch.no_grad():
            self.embeddings.copy_(weights["keyword_embeddings"])
        tensors = load_file(str(directory / "optimizer.safetensors"))
        state: dict[int, dict[str, Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()}
                  for g in plain["optimizer_param_groups"]]
        self.optimizer.load_state_dict({"state": state, "param_groups": groups})
        self.keyword_rng.set_state(tensors["rng.keyword"])
        self.latent_rng.set_state(tensors["rng.latent"])
        self.heldout = tensors["heldout"].to(self.device)
        self.step = int(plain["step"])
        self.last_roundtrip = plain.get("roundtrip_error")
        self._sync_embeddings()
        return directory

    # -- the product -------------------------------------------------------------------------
    def training_summary(self) -> dict:
        """Plain values for the bundle's card and training.json (no OS-entropy seed)."""
        err = self.measure_roundtrip()
        return {"steps": self.step, "keywords": self.keywords,
                "roundtrip_error": err, "roundtrip_warn": self.config.roundtrip_warn,
                "exactly_invertible": bool(err <= self.config.roundtrip_warn),
                "heldout_size": int(self.heldout.shape[0]),
                "config": self.config.to_dict()}

    def save_bundle(self, directory: str | Path | None = None) -> Path:
        """Save the trained bundle (``save_pretrained``) with ``training.json`` beside it.

        The measured round-trip error goes into ``training.json`` and, as the ``training``
        variable, into the model card's template context.
        """
        directory = Path(self.config.out) / "bundle" if directory is None else Path(directory)
        self._sync_embeddings()
        summary = self.training_summary()
        self.cdfnet.eval()
        self.model.save_pretrained(directory, model_card_kwargs={"training": summary})
        self.cdfnet.train()
        (directory / "training.json").write_text(json.dumps(summary, indent=2))
        return directory


def _mode(keyword: str) -> str:
    return "IOS" if keyword == kw.IDENTITY else "AOS"

