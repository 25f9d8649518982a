"""Keyword-based swap training of CDFNet (SPEC §5, paper §3.4).

Each step: draw 2·B latents from the generator's mapping network (no dataset, no labels),
draw one keyword, split both halves with CDFNet, swap their key features, fuse, render
I = G(s) and I′ = G(s′), and minimise L_IOS (keyword identity) or L_AOS (any other keyword).
The generator, the identity network and CLIP are frozen; gradients reach CDFNet (and the
keyword embeddings when asked) through the swapped images.

The objective is ``objective.SwapObjective``; checkpoints are ``checkpoint``; the log is
``monitor``; several processes are ``distributed``. Ctrl-C or SIGTERM during ``fit`` finishes
the current step, writes a checkpoint and raises ``TrainingInterrupted`` (which says how to
resume).
"""

from __future__ import annotations

import json
import signal
import threading
import time
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from ..method import keywords as kw
from . import checkpoint as ckpt
from .config import TrainingConfig
from .distributed import Parallel, shard_pairs
from .monitor import MODE_TERMS, CsvLog, StepResult, Window
from .objective import Frozen, SwapObjective, mode_of, roundtrip_error

__all__ = ["SwapTrainer", "StepResult", "RoundTripWarning", "TrainingInterrupted",
           "latest_checkpoint", "roundtrip_error", "MODE_TERMS"]

latest_checkpoint = ckpt.latest_checkpoint


class RoundTripWarning(UserWarning):
    """CDFNet no longer inverts itself to the tolerance (float32 affine couplings drift)."""


class TrainingInterrupted(Exception):
    """Training stopped on SIGINT / SIGTERM after writing a checkpoint."""

    def __init__(self, signal_name: str, step: int, checkpoint: Path, out: str):
        self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint
        self.exit_code = 130 if signal_name == "SIGINT" else 143
        super().__init__(f"{signal_name}: stopped after step {step}; checkpoint written to "
                         f"{checkpoint}. Resume with: lreorg train --resume {out}")


class SwapTrainer:
    """Trains a bundle's CDFNet by keyword-based swapping.

    Args:
        model: the ``LReOrg`` bundle whose CDFNet (and keyword embeddings) is trained.
        generator: the StyleGAN2 generator G (frozen); its mapping network makes the latents.
        identity_encoder: ``IdentityEncoder`` ρ (frozen): embeddings for L_I / L_I′,
            feature maps for L_p.
        clip: ``KeywordEncoder`` (frozen): zero-shot D(I, t_j) for L_s.
        config: the ``TrainingConfig``.
        device: where everything runs (default: the config's; "auto" = cuda if available;
            with an ``accelerator``, its device).
        reset_cdfnet: redraw CDFNet's initial weights from the run's seed (a fresh run).
        accelerator: an ``accelerate.Accelerator`` of a multi-process run (None: one process).
    """

    def __init__(self, model, generator, identity_encoder, clip, config: TrainingConfig,
                 device: str | torch.device | None = None, reset_cdfnet: bool = False,
                 accelerator=None):
        self.config = config
        self.parallel = Parallel(accelerator)
        device = config.device if device is None else device
        if accelerator is not None:
            device = accelerator.device
        elif str(device) == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if config.batch_size % self.parallel.num_processes:
            raise ValueError(f"batch_size {config.batch_size} must be a multiple of the "
                             f"{self.parallel.num_processes} processes (each computes an "
                             f"equal slice of the pairs)")
        if config.mixed_precision == "fp16" and self.device.type not in ("cuda", "cpu"):
            raise ValueError(f"mixed_precision fp16 needs cuda or cpu, not {self.device}")
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
        # latents are drawn on the generator's device, where they are used. Every process
        # of a data-parallel run draws the same numbers (see distributed.py).
        base = torch.Generator()
        if config.seed is None:
            base.seed()
            if self.parallel.active:  # the processes must agree on one (unwritten) seed
                seed = torch.randint(2 ** 62, (1,), generator=base, dtype=torch.int64)
                base.manual_seed(int(self._broadcast(seed)))
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
        self.objective = SwapObjective(self.cdfnet, self.embeddings, self.model.keywords,
                                       Frozen(self.generator, self.identity_encoder, self.clip),
                                       config)
        params = list(self.objective.parameters())
        for p in params:
            p.requires_grad_(True)
        self._step_module = self.parallel.prepare(self.objective)
        self.optimizer = torch.optim.Adam(params, lr=config.lr, betas=config.betas)
        self.scaler = (torch.amp.GradScaler(self.device.type)
                       if config.mixed_precision == "fp16" else None)
        with torch.no_grad():
            self.heldout = self._codes(config.heldout_size, heldout_rng)
        self.step = 0
        self.last_roundtrip: float | None = None
        self.provenance: dict | None = None  # set by build_trainer: what made the bundle
        self._stop: str | None = None

    def _broadcast(self, value: Tensor) -> Tensor:
        from accelerate.utils import broadcast

        return broadcast(value.to(self.device)).cpu()

    # -- pieces of a step ----------------------------------------------------------------
    def _codes(self, count: int, rng: torch.Generator) -> Tensor:
        """``count`` W+ codes: one mapping sample per code broadcast to every row ("w"), or
        each row drawn from one of ``mixing_sources`` mapping samples ("w+")."""
        rows, cfg = self.generator.n_latent, self.config
        if cfg.latents == "w":
            w = self.generator.sample_w(count, generator=rng)
            return w.unsqueeze(1).expand(-1, rows, -1).contiguous()
        k = cfg.mixing_sources
        w = self.generator.sample_w(count * k, generator=rng).view(count, k, -1)
        pick = torch.randint(k, (count, rows), generator=rng, device=rng.device).to(w.device)
        return torch.gather(w, 1, pick.unsqueeze(-1).expand(-1, -1, w.shape[-1]))

    def sample_pairs(self, shard: bool = True) -> tuple[Tensor, Tensor]:
        """s₁, s₂ from the mapping network (the global batch; this process's slice of the
        pairs when ``shard`` and several processes run)."""
        b = self.config.batch_size
        with torch.no_grad():
            s = self._codes(2 * b, self.latent_rng)
        s1, s2 = s[:b], s[b:]
        if shard and self.parallel.active:
            s1, s2 = shard_pairs(s1, s2, self.parallel.index, self.parallel.num_processes)
        return s1, s2

    def sample_keyword(self) -> str:
        return self.keywords[int(torch.randint(len(self.keywords), (1,),
                                               generator=self.keyword_rng))]

    def condition(self, keyword: str) -> Tensor:
        return self.objective.condition(keyword)

    def render(self, codes: Tensor) -> Tensor:
        """I = G(s) resized to ``image_size`` (antialiased bilinear, differentiable)."""
        return self.objective.render(codes)

    def losses(self, keyword: str, s1: Tensor, s2: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The step objective for a keyword and a batch of pairs: (total, terms)."""
        return self.objective(keyword, s1, s2)

    def evaluate(self, keyword: str, s1: Tensor, s2: Tensor) -> StepResult:
        """The objective on given pairs, without a gradient or an update (for monitoring)."""
        with torch.no_grad():
            total, terms = self.losses(kw.get(keyword, self.model.keywords).name, s1, s2)
        return StepResult(self.step, keyword, mode_of(keyword), float(total),
                          {k: float(v) for k, v in terms.items()})

    def heldout_pairs(self) -> tuple[Tensor, Tensor]:
        """The held-out batch as pairs (first half, second half)."""
        half = self.heldout.shape[0] // 2
        if half < 1:
            raise ValueError("heldout_size must be >= 2 to make held-out pairs")
        return self.heldout[:half], self.heldout[half:2 * half]

    def train_step(self) -> StepResult:
        """One keyword-based swap step (sample, swap, fuse, render, score, update)."""
        keyword = self.sample_keyword()
        s1, s2 = self.sample_pairs()
        total, terms = self._step_module(keyword, s1, s2)
        # The logged values are the global batch's (mean of equal slices); the stop flag
        # travels with them, so every process stops after the same step.
        names = sorted(terms)
        packed = torch.stack([total.detach().float().cpu(),
                              *[terms[n].detach().float().cpu() for n in names],
                              torch.tensor(1.0 if self._stop else 0.0)])
        packed = self.parallel.mean(packed)
        if not torch.isfinite(packed[0]):
            raise FloatingPointError(f"step {self.step + 1}: the {keyword} objective is "
                                     f"{float(packed[0])}; lower lr or check the scorers")
        if packed[-1] > 0 and self._stop is None:
            self._stop = "SIGTERM"  # another process was signalled
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            total.backward()
            self.optimizer.step()
        else:  # fp16: scale the loss so small gradients survive the half-precision passes
            self.scaler.scale(total).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.step += 1
        return StepResult(self.step, keyword, mode_of(keyword), float(packed[0]),
                          {n: float(v) for n, v in zip(names, packed[1:-1])})

    def measure_roundtrip(self) -> float:
        """max |CDFNet⁻¹(CDFNet(s)) − (0, s)| on the held-out batch, over every keyword."""
        self.last_roundtrip = roundtrip_error(self.cdfnet, self.heldout,
                                              self.embeddings.detach()[self._keyword_rows])
        return self.last_roundtrip

    # -- the loop ------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        if self._stop is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now (checkpoints are atomic)
        self._stop = signal.Signals(signum).name

    def fit(self, steps: int | None = None) -> list[StepResult]:
        """Train until ``steps`` (default: the config's) steps are done, with progress bar,
        CSV log, optional TensorBoard, round-trip checks and periodic checkpoints.

        SIGINT / SIGTERM end the current step, write a checkpoint and raise
        ``TrainingInterrupted``."""
        from tqdm.auto import tqdm

        cfg, main = self.config, self.parallel.is_main
        target = cfg.steps if steps is None else int(steps)
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        log = CsvLog(out / "log.csv", self.keywords, self.step) if main else None
        board = self._tensorboard(out) if cfg.tensorboard and main else None
        history: list[StepResult] = []
        window = Window(self.keywords)
        bar = tqdm(total=target, initial=self.step, desc="swap training", unit="step",
                   disable=not (cfg.progress and main), dynamic_ncols=True)
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                handlers[sig] = signal.signal(sig, self._on_signal)
        self._stop = None
        try:
            tic = time.perf_counter()
            while self.step < target:
                result = self.train_step()
                history.append(result)
                window.add(result)
                bar.update(1)
                last = self.step == target or self._stop is not None
                if self.step % cfg.log_every == 0 or last:
                    seconds = (time.perf_counter() - tic) / max(1, window.steps)
                    err = self.measure_roundtrip()
                    if err > cfg.roundtrip_warn and main:
                        message = (f"step {self.step}: CDFNet round-trip error {err:.3g} > "
                                   f"{cfg.roundtrip_warn:g} on the held-out batch: it is no "
                                   f"longer exactly invertible (lower lr, or stop here)")
                        warnings.warn(message, RoundTripWarning, stacklevel=2)
                        bar.write(f"warning: {message}")
                    if log is not None:
                        means = log.write(self.step, window, err, seconds)
                        if board is not None:
                            for name, value in means.items():
                                board.add_scalar(name, value, self.step)
                            board.add_scalar("roundtrip_error", err, self.step)
                        bar.set_postfix({k: f"{v:.3g}" for k, v in means.items()
                                         if k.endswith("/total") and k[:3] in MODE_TERMS}
                                        | {"roundtrip": f"{err:.1e}"})
                    window.reset()
                    tic = time.perf_counter()
                if self.step % cfg.checkpoint_every == 0 or last:
                    path = self.save_checkpoint()
                if self._stop is not None:
                    raise TrainingInterrupted(self._stop, self.step, path, cfg.out)
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            bar.close()
            if log is not None:
                log.close()
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

    # -- checkpoints -----------------------------------------------------------------------
    def sync_embeddings(self) -> None:
        if isinstance(self.embeddings, nn.Parameter):
            self.model.set_keyword_embeddings(self.embeddings.detach())

    def save_checkpoint(self, directory: str | Path | None = None) -> Path:
        """Write weights, optimizer and RNG state (safetensors) and plain values (JSON)."""
        return ckpt.save_checkpoint(self, directory)

    def load_checkpoint(self, path: str | Path) -> Path:
        """Continue from a checkpoint (see ``checkpoint.load_checkpoint``)."""
        return ckpt.load_checkpoint(self, path)

    # -- the product -------------------------------------------------------------------------
    def training_summary(self) -> dict:
        """Plain values for the bundle's card and training.json (no OS-entropy seed)."""
        err = self.measure_roundtrip()
        return {"steps": self.step, "keywords": self.keywords,
                "roundtrip_error": err, "roundtrip_warn": self.config.roundtrip_warn,
                "exactly_invertible": bool(err <= self.config.roundtrip_warn),
                "heldout_size": int(self.heldout.shape[0]),
                "num_processes": self.parallel.num_processes,
                "config": self.config.to_dict(), "provenance": self.provenance}

    def save_bundle(self, directory: str | Path | None = None) -> Path:
        """Save the trained bundle (``save_pretrained``) with ``training.json`` beside it.

        The measured round-trip error goes into ``training.json`` and, as the ``training``
        variable, into the model card's template context; the provenance (backbone and
        scorer weights actually used) goes into the bundle's config.json as well.
        """
        directory = Path(self.config.out) / "bundle" if directory is None else Path(directory)
        self.sync_embeddings()
        summary = self.training_summary()
        if self.provenance is not None and hasattr(self.model, "provenance"):
            self.model.provenance = {**(self.model.provenance or {}),
                                     "training": self.provenance}
        if self.parallel.is_main:
            self.cdfnet.eval()
            self.model.save_pretrained(directory, model_card_kwargs={"training": summary})
            self.cdfnet.train()
            (directory / "training.json").write_text(json.dumps(summary, indent=2))
        self.parallel.barrier()
        return directory
