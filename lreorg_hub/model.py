"""The LReOrg bundle: CDFNet + anonymizers + keyword embeddings + backbone reference.

One ``PyTorchModelHubMixin`` model, one ``config.json`` (shapes and plain values only) and one
``model.safetensors`` (every tensor, anonymizer statistics included). ``reorganize`` is the
whole method in latent space (SPEC §1): anonymous reorganization (AR) then recovery
reorganization (RR); it never sees pixels.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from huggingface_hub import ModelCard, PyTorchModelHubMixin, constants, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
from safetensors import safe_open
from safetensors.torch import load_model
from torch import Tensor, nn

from . import keywords as kw
from .anonymizers import (MECHANISMS, AttributeAnonymizer, IdentityAnonymizer,
                          KAnonymityIdentityAnonymizer, LaplaceIdentityAnonymizer,
                          check_epsilon, check_rank_window)
from .cdfnet import CDFNet
from .privacy import PrivacyRecord, make_generator

__all__ = ["LReOrg", "ReorganizeResult", "IDENTITY_METHODS", "BundleError",
           "DEFAULT_BACKBONE", "DEFAULT_TEXT_ENCODER"]

# How the identity key feature may be replaced: GIA in its two modes, or a latent baseline.
IDENTITY_METHODS = MECHANISMS + ("laplace", "k-anonymity")

DEFAULT_BACKBONE = {
    "repo_id": "AIRI-Institute/HairFastGAN",
    "filename": "pretrained_models/encoder4editing/e4e_ffhq_encode.pt",
    "revision": "main",
    "format": "e4e",
    "size": 1024,
}
DEFAULT_TEXT_ENCODER = {"model_name": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"}


def _card_template(name: str = "lreorg.md") -> str:
    """Read a card template from model_cards/ (the repo's top level in a checkout or an
    editable install; lreorg_hub/model_cards/ in a wheel, see pyproject's package-dir)."""
    here = Path(__file__).resolve().parent
    for folder in (here.parent / "model_cards", here / "model_cards"):
        if (folder / name).is_file():
            return (folder / name).read_text("utf-8")
    raise FileNotFoundError(f"model card template {name} not found next to {here}")


class BundleError(ValueError):
    """A bundle folder or repo that is not a loadable LReOrg bundle (clear, user-facing)."""


def _offline_error(repo_id: str, revision: str | None) -> BundleError:
    return BundleError(
        f"could not fetch the LReOrg bundle {repo_id!r} (revision {revision or 'main'}): the Hub "
        f"is unreachable or offline (HF_HUB_OFFLINE) and the files are not in the local cache. "
        f"Download it on a machine with internet access (`hf download {repo_id} --local-dir "
        f"DIR`) and pass DIR instead.")


@dataclass
class ReorganizeResult:
    """Output of ``LReOrg.reorganize``.

    anonymized: s^M after AR, shape (samples, N, L, 512).
    recovered: s^N after RR, shape (samples, N, L, 512) (equal to ``anonymized`` if no RR).
    record: what was applied (keywords in order, ε per draw and in total, window, mechanism,
        the seed only if the user chose it).
    information_loss: mean |Δr| of every fusion step, keyed "anonymize:<kw>" / "recover:<kw>",
        shape (samples, N); ≈ 0 for a well-trained CDFNet.
    """

    anonymized: Tensor
    recovered: Tensor
    record: PrivacyRecord
    information_loss: dict[str, Tensor] = field(default_factory=dict)


class LReOrg(nn.Module, PyTorchModelHubMixin,
             library_name="lreorg-hub", license="mit", pipeline_tag="image-to-image",
             tags=["face-anonymization", "privacy", "differential-privacy", "stylegan2", "lreorg"],
             model_card_template=_card_template()):
    """The LReOrg face-privacy model in latent space.

    Args:
        cdfnet: CDFNet constructor arguments (see ``CDFNet``); defaults to the 18-row W+ net.
        keywords: the keywords the bundle has condition embeddings (and, for attributes, KAA
            means) for; names from ``lreorg_hub.keywords.KEYWORDS``.
        num_groups, num_members: GIA size (m groups, member bank size).
        laplace_clip_norm: L1 clipping norm of the Laplace baseline.
        rank_window: the default GIA window [a, b].
        epsilon: the default privacy budget ε.
        backbone: where the encoder/generator checkpoint lives (Hub repo id, file, revision).
        text_encoder: the open_clip model the keyword embeddings came from.
    """

    def __init__(self, cdfnet: dict | None = None, keywords: list[str] | None = None,
                 num_groups: int = 64, num_members: int = 1024,
                 laplace_clip_norm: float = 100.0, rank_window: list[int] | None = None,
                 epsilon: float = 1.0, backbone: dict | None = None,
                 text_encoder: dict | None = None):
        super().__init__()
        self.cdfnet = CDFNet(**(cdfnet or {}))
        names = list(kw.KEYWORDS) if keywords is None else [kw.get(k).name for k in keywords]
        if len(set(names)) != len(names):
            raise ValueError(f"keywords must be unique, got {names}")
        self.keywords = names
        self.feature_shape = (self.cdfnet.num_rows, self.cdfnet.latent_dim)
        self.register_buffer("keyword_embeddings", torch.zeros(len(names), self.cdfnet.cond_dim))
        self.identity_anonymizer = IdentityAnonymizer(num_groups, num_members, self.feature_shape)
        self.attribute_anonymizers = nn.ModuleDict({
            kw.KEYWORDS[n].slug: AttributeAnonymizer(len(kw.KEYWORDS[n].subcategories),
                                                     self.feature_shape)
            for n in names if n != kw.IDENTITY})
        self.laplace_anonymizer = LaplaceIdentityAnonymizer(laplace_clip_norm)
        self.k_anonymity_anonymizer = KAnonymityIdentityAnonymizer()
        self.default_rank_window = tuple(rank_window or (2, max(2, min(num_groups, 16))))
        self.default_epsilon = check_epsilon(epsilon)
        self.backbone = {**DEFAULT_BACKBONE, **(backbone or {})}
        self.text_encoder = {**DEFAULT_TEXT_ENCODER, **(text_encoder or {})}

    @classmethod
    def with_random_weights(cls, generator: torch.Generator | None = None, std: float = 0.02,
                            **config) -> "LReOrg":
        """An untrained bundle whose CDFNet weights and keyword embeddings are random.

        For demos, tests and benchmarks only: the splits mean nothing (a *new* CDFNet is the
        identity map, which would make every key feature 0). Anonymizers still need fitting.
        """
        model = cls(**config)
        if generator is None:  # reproducible by default, and never the global RNG
            generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in model.cdfnet.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * std)
            emb = torch.randn(model.keyword_embeddings.shape, generator=generator)
            model.keyword_embeddings.copy_(emb / emb.norm(dim=-1, keepdim=True))
        return model

    # -- configuration ---------------------------------------------------------------------
    def get_config(self) -> dict:
        """The constructor arguments that rebuild this bundle's shapes (written to config.json)."""
        ia = self.identity_anonymizer
        return {
            "cdfnet": self.cdfnet.config,
            "keywords": list(self.keywords),
            "num_groups": ia.num_groups,
            "num_members": ia.num_members,
            "laplace_clip_norm": self.laplace_anonymizer.clip_norm,
            "rank_window": list(self.default_rank_window),
            "epsilon": self.default_epsilon,
            "backbone": dict(self.backbone),
            "text_encoder": dict(self.text_encoder),
        }

    @property
    def device(self) -> torch.device:
        return self.keyword_embeddings.device

    def set_keyword_embeddings(self, embeddings: dict[str, Tensor] | Tensor) -> None:
        """Store the condition vectors k^f (e.g. from ``KeywordEncoder.keyword_embeddings``)."""
        if isinstance(embeddings, dict):
            missing = [n for n in self.keywords if n not in embeddings]
            if missing:
                raise ValueError(f"embeddings missing for keywords: {', '.join(missing)}")
            embeddings = torch.stack([torch.as_tensor(embeddings[n]) for n in self.keywords])
        if tuple(embeddings.shape) != tuple(self.keyword_embeddings.shape):
            raise ValueError(f"keyword embeddings must have shape "
                             f"{tuple(self.keyword_embeddings.shape)}, got {tuple(embeddings.shape)}")
        with torch.no_grad():
            self.keyword_embeddings.copy_(embeddings)

    def condition(self, keyword: str) -> Tensor:
        """k^f for a keyword of this bundle, shape (cond_dim,)."""
        name = kw.get(keyword, self.keywords).name
        return self.keyword_embeddings[self.keywords.index(name)]

    def attribute_anonymizer(self, keyword: str) -> AttributeAnonymizer:
        return self.attribute_anonymizers[kw.KEYWORDS[kw.get(keyword, self.keywords).name].slug]

    # -- fitting the anonymizers (SPEC §4) --------------------------------------------------
    @torch.no_grad()
    def fit_identity_anonymizer(self, codes: Tensor, iterations: int = 50,
                                generator: torch.Generator | None = None,
                                batch_size: int = 1024) -> IdentityAnonymizer:
        """GIA fitting: identity key features of many codes (e.g. sampled from the generator's
        mapping network), clustered into the bundle's m groups."""
        features = torch.cat([self.disentangle(c, kw.IDENTITY)[0]
                              for c in codes.split(batch_size)])
        return self.identity_anonymizer.fit(features, iterations, generator)

    @torch.no_grad()
    def fit_attribute_anonymizer(self, keyword: str, codes: Tensor, labels: Tensor,
                                 batch_size: int = 1024) -> AttributeAnonymizer:
        """KAA fitting: average the keyword's key features per sub-category label (N,), e.g.
        the CLIP zero-shot label of each code's image."""
        name = kw.get(keyword, self.keywords).name
        if name == kw.IDENTITY:
            raise ValueError("identity is anonymized by GIA: use fit_identity_anonymizer")
        features = torch.cat([self.disentangle(c, name)[0] for c in codes.split(batch_size)])
        return self.attribute_anonymizer(name).fit(features, labels.to(features.device))

    # -- the method in latent space ---------------------------------------------------------
    def disentangle(self, codes: Tensor, keyword: str) -> tuple[Tensor, Tensor]:
        """CDFNet forward for a keyword: codes → (key feature f, residual r)."""
        return self.cdfnet(codes.to(self.device), self.condition(keyword))

    def fuse(self, f: Tensor, r: Tensor, keyword: str) -> tuple[Tensor, Tensor]:
        """CDFNet inverse for a keyword: (f̂, r) → (information loss Δr, code ŝ)."""
        return self.cdfnet.inverse(f, r, self.condition(keyword))

    def anonymize_step(self, s: Tensor, keyword: str, mechanism: str = "window",
                       epsilon: float = 1.0, rank_window: tuple[int, int] = (2, 16),
                       generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """One AR step: (f, r) = CDFNet(s, k); f̂ = A_k(f); (Δr, s') = CDFNet⁻¹(f̂, r, k)."""
        f, r = self.disentangle(s, keyword)
        if keyword != kw.IDENTITY:
            f_hat = self.attribute_anonymizer(keyword)(f)
        elif mechanism == "laplace":
            f_hat = self.laplace_anonymizer(f, epsilon, generator)
        elif mechanism == "k-anonymity":
            f_hat = self.k_anonymity_anonymizer(f, self.identity_anonymizer)
        else:
            f_hat = self.identity_anonymizer(f, epsilon, rank_window, mechanism, generator)
        return self.fuse(f_hat, r, keyword)

    def recover_step(self, s: Tensor, s0: Tensor, keyword: str) -> tuple[Tensor, Tensor]:
        """One RR step: r from s, f⁰ from the original s⁰, (Δr, s') = CDFNet⁻¹(f⁰, r, k).

        s0 may hold fewer rows than s when s stacks several samples of the same faces.
        """
        _, r = self.disentangle(s, keyword)
        f0, _ = self.disentangle(s0, keyword)
        return self.fuse(f0.repeat(s.shape[0] // f0.shape[0], 1, 1), r, keyword)

    @torch.no_grad()
    def reorganize(self, codes: Tensor, anonymize: Sequence[str] | str | None = kw.DEFAULT_ANONYMIZE,
                   recover: Sequence[str] | str | None = kw.DEFAULT_RECOVER,
                   epsilon: float | None = None, rank_window: Sequence[int] | None = None,
                   mechanism: str = "window", seed: int | None = None,
                   samples: int = 1) -> ReorganizeResult:
        """Anonymize the K1 keywords of W / W+ codes, then recover the K2 keywords (SPEC §1).

        Args:
            codes: s⁰ of shape (N, L, 512) or (N, 512).
            anonymize: K1, run in the order given (identity first).
            recover: K2, run in the order given.
            epsilon: GIA / Laplace privacy budget (default: the bundle's).
            rank_window: GIA window (a, b) (default: the bundle's).
            mechanism: identity method: "window" (paper GIA), "strict" (GIA, ε-LDP over all
                groups), "laplace" or "k-anonymity" (baselines).
            seed: seeds the one torch.Generator of the call; None (default) draws it from OS
                entropy and does not keep it (the record says so; the ε-DP guarantee needs
                secret coins). A seed you give is recorded with a warning not to publish it.
            samples: how many independent draws per face (diverse outputs); releasing all of
                them spends samples·ε (the record's ``epsilon_total``).
        """
        k1, k2 = kw.validate_selection(anonymize, recover, self.keywords)
        if mechanism not in IDENTITY_METHODS:
            raise ValueError(f"mechanism must be one of {', '.join(IDENTITY_METHODS)}, "
                             f"got {mechanism!r}")
        eps = check_epsilon(self.default_epsilon if epsilon is None else epsilon)
        window = check_rank_window(tuple(rank_window or self.default_rank_window),
                                   self.identity_anonymizer.num_groups)
        if isinstance(samples, bool) or int(samples) != samples or samples < 1:
            raise ValueError(f"samples must be a positive integer, got {samples!r}")
        samples = int(samples)
        generator, seed_kept, seed_source = make_generator(seed)

        s0 = self.cdfnet._rows(codes.to(self.device, torch.float32), "codes")
        n = s0.shape[0]
        # All samples in one batch, sample-major: row i*N + j is sample i of face j.
        s = s0.repeat(samples, 1, 1)
        loss: dict[str, Tensor] = {}
        for keyword in k1:
            delta, s = self.anonymize_step(s, keyword, mechanism, eps, window, generator)
            loss[f"anonymize:{keyword}"] = delta.abs().mean(dim=(1, 2)).reshape(samples, n)
        s_m = s
        for keyword in k2:
            delta, s = self.recover_step(s, s0, keyword)
            loss[f"recover:{keyword}"] = delta.abs().mean(dim=(1, 2)).reshape(samples, n)

        identity_method = mechanism if kw.IDENTITY in k1 else "none"
        uses_budget = identity_method in ("window", "strict", "laplace")
        record = PrivacyRecord(
            anonymize=list(k1), recover=list(k2), mechanism=identity_method,
            epsilon=eps if uses_budget else None,
            rank_window=list(window) if identity_method in MECHANISMS else None,
            seed=seed_kept, seed_source=seed_source, samples=samples,
            extra={"attribute_anonymizer": "k-farthest sub-category mean (KAA)"}
            if any(k != kw.IDENTITY for k in k1) else {})
        shape = (samples, n, *self.feature_shape)
        return ReorganizeResult(anonymized=s_m.reshape(shape), recovered=s.reshape(shape),
                                record=record, information_loss=loss)

    # -- Hub: saving and strict loading ------------------------------------------------------
    def generate_model_card(self, *args, **kwargs) -> ModelCard:
        fitted = {"identity (GIA)": bool(self.identity_anonymizer.fitted)}
        fitted.update({n: bool(self.attribute_anonymizer(n).fitted)
                       for n in self.keywords if n != kw.IDENTITY})
        kwargs.setdefault("config_json", json.dumps(self.get_config(), indent=2, sort_keys=True))
        kwargs.setdefault("keywords", self.keywords)
        kwargs.setdefault("fitted", fitted)
        kwargs.setdefault("backbone", self.backbone)
        kwargs.setdefault("text_encoder", self.text_encoder)
        return super().generate_model_card(*args, **kwargs)

    def save_pretrained(self, save_directory: str | Path, *, config: dict | None = None,
                        **kwargs) -> str | None:
        """Write config.json, model.safetensors and a model card (README.md, regenerated).

        The card is rendered first, so a missing Jinja2 fails before anything is written.
        """
        card = self.generate_model_card(**(kwargs.pop("model_card_kwargs", None) or {}))
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        card.save(save_directory / "README.md")
        return super().save_pretrained(save_directory, config=config or self.get_config(),
                                       **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs) -> "LReOrg":
        """Load a bundle from a local folder or a Hub repo id (strict; ``map_location`` and
        ``dtype`` place the model)."""
        path = str(pretrained_model_name_or_path)
        looks_local = os.path.isabs(path) or path.startswith(".") or os.path.exists(path)
        if looks_local and not os.path.isdir(path):
            raise BundleError(f"{path} is not a folder with an LReOrg bundle (config.json + "
                              f"model.safetensors)")
        try:
            return super().from_pretrained(path, **kwargs)
        except LocalEntryNotFoundError as e:
            raise _offline_error(path, kwargs.get("revision")) from e

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir, force_download: bool,
                         local_files_only: bool, token, map_location: str | torch.device = "cpu",
                         strict: bool = True, dtype: torch.dtype | None = None, **model_kwargs):
        """Strict by default (the mixin's default silently keeps random weights for missing
        tensors), and the model ends on ``map_location`` (the mixin only reads tensors there)."""
        if os.path.isdir(model_id):
            if not os.path.isfile(os.path.join(model_id, constants.CONFIG_NAME)):
                raise BundleError(f"{model_id} is not an LReOrg bundle: config.json is missing")
            model_file = os.path.join(model_id, constants.SAFETENSORS_SINGLE_FILE)
            if not os.path.isfile(model_file):
                raise BundleError(f"{model_id} is not an LReOrg bundle: model.safetensors is "
                                  f"missing")
        else:
            try:
                model_file = hf_hub_download(model_id, constants.SAFETENSORS_SINGLE_FILE,
                                             revision=revision, cache_dir=cache_dir,
                                             force_download=force_download, token=token,
                                             local_files_only=local_files_only)
            except EntryNotFoundError as e:
                if isinstance(e, LocalEntryNotFoundError):
                    raise _offline_error(model_id, revision) from e
                raise BundleError(f"{model_id!r} has no model.safetensors: not an LReOrg "
                                  f"bundle") from e
        model = cls(**model_kwargs)
        cls._check_weights_match(model, model_file)
        missing, unexpected = load_model(model, model_file, strict=strict)
        model.to(device=map_location, dtype=dtype)
        model.eval()
        return model

    @staticmethod
    def _check_weights_match(model: nn.Module, model_file: str) -> None:
        """Compare the file's tensor names and shapes with the model built from config.json."""
        with safe_open(model_file, framework="pt") as fh:
            found = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        problems = []
        missing = sorted(set(expected) - set(found))
        unexpected = sorted(set(found) - set(expected))
        wrong = sorted(k for k in set(found) & set(expected) if found[k] != expected[k])
        if missing:
            problems.append(f"{len(missing)} tensor(s) missing from the weights, e.g. "
                            f"{', '.join(missing[:5])}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected tensor(s) in the weights, e.g. "
                            f"{', '.join(unexpected[:5])}")
        if wrong:
            problems.append("shape mismatch: " + "; ".join(
                f"{k} is {list(found[k])} in the weights but {list(expected[k])} per config.json"
                for k in wrong[:5]))
        if problems:
            raise BundleError("the bundle's config.json does not match its model.safetensors: "
                              + " | ".join(problems))
