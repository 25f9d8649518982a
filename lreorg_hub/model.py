"""The LReOrg bundle: CDFNet + anonymizers + keyword embeddings + backbone reference.

One ``PyTorchModelHubMixin`` model, one ``config.json`` (shapes and plain values only) and one
``model.safetensors`` (every tensor, anonymizer statistics included). ``reorganize`` is the
whole method in latent space (SPEC §1): anonymous reorganization (AR) then recovery
reorganization (RR); it never sees pixels.
"""

from __future__ import annotations

import inspect
import itertools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from huggingface_hub import ModelCard, PyTorchModelHubMixin, constants, hf_hub_download
from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HFValidationError,
                                    LocalEntryNotFoundError, OfflineModeIsEnabled,
                                    RepositoryNotFoundError, RevisionNotFoundError)
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model
from torch import Tensor, nn

from . import keywords as kw
from .anonymizers import (MECHANISMS, AttributeAnonymizer, IdentityAnonymizer,
                          KAnonymityIdentityAnonymizer, LaplaceIdentityAnonymizer,
                          check_epsilon, check_rank_window)
from .cdfnet import CDFNet
from .privacy import PrivacyRecord, fresh_generator, make_generator, normal
from .reachability import hub_reachable

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


# Bounds that keep a bundle's config.json from asking for absurd memory or time before
# anything is built (the published sizes are far inside them).
_CDFNET_LIMITS = {"latent_dim": (1, 4096), "num_rows": (1, 64), "cond_dim": (1, 4096),
                  "num_blocks": (1, 64), "hidden_dim": (1, 16384), "dense_growth": (1, 4096),
                  "dense_layers": (0, 32)}
_MAX_GROUPS, _MAX_MEMBERS = 65_536, 1_000_000
_MAX_ELEMENTS = 2**31  # 8 GiB of float32: far above any real bundle


def _read_config(config_file: str, where: str) -> dict:
    """config.json as a dict, or a BundleError naming the file."""
    if not os.path.isfile(config_file):
        raise BundleError(f"{where} is not an LReOrg bundle: config.json is missing")
    try:
        with open(config_file, encoding="utf-8") as fh:
            config = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{config_file} is not valid JSON ({e}); the bundle's config.json "
                          f"is damaged") from None
    if not isinstance(config, dict):
        raise BundleError(f"{config_file} must hold a JSON object (the bundle's settings), "
                          f"got a JSON {type(config).__name__}")
    return config


def _int_in(value, low: int, high: int, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise BundleError(f"{where}: {name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise BundleError(f"{where}: {name} = {value!r} is out of range ({low}..{high})")
    return int(value)


def _check_config(config: dict, where: str) -> None:
    """Range and type checks of config.json values, before any tensor is allocated."""
    net = config.get("cdfnet") or {}
    if not isinstance(net, dict):
        raise BundleError(f"{where}: cdfnet must be an object of CDFNet sizes, got {net!r}")
    sizes = {k: v.default for k, v in inspect.signature(CDFNet.__init__).parameters.items()
             if v.default is not inspect.Parameter.empty}
    unknown = sorted(set(net) - set(sizes))
    if unknown:
        raise BundleError(f"{where}: unknown cdfnet setting(s) {', '.join(unknown)}")
    sizes.update(net)
    for name, (low, high) in _CDFNET_LIMITS.items():
        _int_in(sizes[name], low, high, f"cdfnet.{name}", where)
    clamp = sizes["clamp"]
    if isinstance(clamp, bool) or not isinstance(clamp, (int, float)) or not 0 < clamp < 100:
        raise BundleError(f"{where}: cdfnet.clamp must be a number in (0, 100), got {clamp!r}")
    groups = _int_in(config.get("num_groups", 64), 1, _MAX_GROUPS, "num_groups", where)
    members = _int_in(config.get("num_members", 1024), groups, _MAX_MEMBERS, "num_members",
                      where)
    window = config.get("rank_window")
    if window is not None:
        if not isinstance(window, list) or len(window) != 2:
            raise BundleError(f"{where}: rank_window must be [a, b], got {window!r}")
        a = _int_in(window[0], 1, groups, "rank_window a", where)
        _int_in(window[1], a, groups, "rank_window b", where)
    try:
        check_epsilon(config.get("epsilon", 1.0))
    except ValueError as e:
        raise BundleError(f"{where}: {e}") from None
    clip = config.get("laplace_clip_norm", 100.0)
    if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not 0 < clip < math.inf:
        raise BundleError(f"{where}: laplace_clip_norm must be a finite number > 0, got "
                          f"{clip!r}")
    keywords = config.get("keywords")
    if keywords is not None:
        if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
            raise BundleError(f"{where}: keywords must be a list of names, got {keywords!r}")
        try:
            [kw.get(k) for k in keywords]
        except ValueError as e:
            raise BundleError(f"{where}: {e}") from None
    for name in ("backbone", "text_encoder"):
        if not isinstance(config.get(name) or {}, dict):
            raise BundleError(f"{where}: {name} must be an object, got {config[name]!r}")
    rows, dim = sizes["num_rows"], sizes["latent_dim"]
    elements = (members + groups) * rows * dim
    if elements > _MAX_ELEMENTS:
        raise BundleError(f"{where}: num_members, num_groups, cdfnet.num_rows and latent_dim "
                          f"ask for a member bank of {elements * 4 / 2**30:.0f} GiB; refusing "
                          f"(limit {_MAX_ELEMENTS * 4 / 2**30:.0f} GiB)")


#: What to do while no trained bundle exists (said by every "bundle not found" error).
NO_BUNDLE_ADVICE = (
    "No trained LReOrg bundle is published yet. To try everything offline, write a "
    "random-weight demo with `lreorg demo-bundle DIR` and use --bundle DIR/bundle with "
    "LREORG_BACKBONE_PATH=DIR/backbone.pt (Python: lreorg_hub.demo.write_demo); with a bundle "
    "you trained or downloaded, pass its folder; the image baselines (--method blur, pixelate, "
    "mask) need no bundle.")


def _offline_error(repo_id: str, revision: str | None) -> BundleError:
    return BundleError(
        f"could not load the LReOrg bundle {repo_id!r} (revision {revision or 'main'}): it is "
        f"not a local folder, the Hub is unreachable or offline (HF_HUB_OFFLINE) and it is not "
        f"in the local cache. {NO_BUNDLE_ADVICE}")


def _not_on_hub_error(repo_id: str, revision: str | None, err: Exception) -> BundleError:
    return BundleError(
        f"{repo_id!r} (revision {revision or 'main'}) is not an LReOrg bundle on the Hub "
        f"({type(err).__name__}). {NO_BUNDLE_ADVICE}")


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
        if generator is None:  # the one policy: OS entropy, never the global RNG
            generator = fresh_generator()
        with torch.no_grad():
            for p in model.cdfnet.parameters():
                p.copy_(normal(p.shape, generator, device=p.device) * std)
            emb = normal(model.keyword_embeddings.shape, generator, device=model.device)
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

    # -- the method in latent space ---------------------------------------------------------
    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype CDFNet runs in (float32 unless ``cdfnet`` was cast, e.g. by
        ``LReOrgPipeline.to(dtype=...)``); the anonymizers' statistics stay float32."""
        return self.cdfnet.row_embedding.dtype

    def disentangle(self, codes: Tensor, keyword: str) -> tuple[Tensor, Tensor]:
        """CDFNet forward for a keyword: codes → (key feature f, residual r), in
        ``compute_dtype``."""
        return self.cdfnet(codes.to(self.device, self.compute_dtype), self.condition(keyword))

    def fuse(self, f: Tensor, r: Tensor, keyword: str) -> tuple[Tensor, Tensor]:
        """CDFNet inverse for a keyword: (f̂, r) → (information loss Δr, code ŝ)."""
        dtype = self.compute_dtype
        return self.cdfnet.inverse(f.to(dtype), r.to(dtype), self.condition(keyword))

    def anonymize_step(self, s: Tensor, keyword: str, mechanism: str = "window",
                       epsilon: float = 1.0, rank_window: tuple[int, int] = (2, 16),
                       generator: torch.Generator | Sequence[tuple[torch.Generator, int]]
                       | None = None) -> tuple[Tensor, Tensor]:
        """One AR step: (f, r) = CDFNet(s, k); f̂ = A_k(f); (Δr, s') = CDFNet⁻¹(f̂, r, k).

        ``generator`` may also be a list of (generator, rows): consecutive blocks of s drawn
        with their own generator (many photos in one CDFNet pass, each with its own coins).
        The anonymizer sees f in float32 whatever CDFNet's dtype: its distances and the
        mechanism's scores are never rounded to half precision."""
        f, r = self.disentangle(s, keyword)
        f = f.float()
        if keyword != kw.IDENTITY:
            f_hat = self.attribute_anonymizer(keyword)(f)
        elif mechanism == "k-anonymity":
            f_hat = self.k_anonymity_anonymizer(f, self.identity_anonymizer)
        else:
            blocks = generator if isinstance(generator, (list, tuple)) else \
                [(generator, f.shape[0])]
            if sum(rows for _, rows in blocks) != f.shape[0]:
                raise ValueError(f"generator blocks cover {sum(r for _, r in blocks)} rows, "
                                 f"the codes have {f.shape[0]}")
            parts = f.split([rows for _, rows in blocks])
            if mechanism == "laplace":
                f_hat = torch.cat([self.laplace_anonymizer(part, epsilon, g)
                                   for part, (g, _) in zip(parts, blocks)])
            else:
                f_hat = torch.cat([self.identity_anonymizer(part, epsilon, rank_window,
                                                            mechanism, g)
                                   for part, (g, _) in zip(parts, blocks)])
        return self.fuse(f_hat, r, keyword)

    def recover_step(self, s: Tensor, s0: Tensor, keyword: str,
                     origin: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One RR step: r from s, f⁰ from the original s⁰, (Δr, s') = CDFNet⁻¹(f⁰, r, k).

        s0 may hold fewer rows than s when s stacks several samples of the same faces:
        ``origin`` gives, for each row of s, its row of s0 (default: s is s0 repeated).
        """
        _, r = self.disentangle(s, keyword)
        f0, _ = self.disentangle(s0, keyword)
        f0 = f0.repeat(s.shape[0] // f0.shape[0], 1, 1) if origin is None else f0[origin]
        return self.fuse(f0, r, keyword)

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
        return self.reorganize_many([codes], [seed], anonymize, recover, epsilon=epsilon,
                                    rank_window=rank_window, mechanism=mechanism,
                                    samples=samples)[0]

    @torch.no_grad()
    def reorganize_many(self, codes: Sequence[Tensor], seeds: Sequence[int | None],
                        anonymize: Sequence[str] | str | None = kw.DEFAULT_ANONYMIZE,
                        recover: Sequence[str] | str | None = kw.DEFAULT_RECOVER,
                        epsilon: float | None = None,
                        rank_window: Sequence[int] | None = None, mechanism: str = "window",
                        samples: int = 1) -> list[ReorganizeResult]:
        """:meth:`reorganize` for many photos at once: ``codes[i]`` (N_i, L, 512) drawn with
        ``seeds[i]`` (None: OS entropy), one result per photo, in order.

        Every CDFNet pass takes the faces and samples of all photos together; only the DP
        draw runs per photo, with that photo's own generator, so each result is what
        ``reorganize(codes[i], seed=seeds[i])`` gives (up to float rounding of the larger
        batch).
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
        if len(codes) != len(seeds):
            raise ValueError(f"{len(codes)} code tensors but {len(seeds)} seeds")
        generators = [make_generator(seed) for seed in seeds]

        s0 = [self.cdfnet._rows(c.to(self.device, torch.float32), "codes") for c in codes]
        for part in s0:
            if not bool(torch.isfinite(part).all()):
                raise ValueError("codes contain NaN or ∞ values (a damaged encoder or input); "
                                 "refusing to anonymize them into non-finite faces")
        counts = [part.shape[0] for part in s0]
        # Photo after photo; within a photo sample-major: row i*N + j is sample i of face j.
        s = torch.cat([part.repeat(samples, 1, 1) for part in s0])
        starts = list(itertools.accumulate([0] + counts[:-1]))
        origin = torch.cat([start + torch.arange(samples * n, device=self.device) % n
                            for start, n in zip(starts, counts)])
        blocks = [(g, samples * n) for (g, _, _), n in zip(generators, counts)]
        s_all0 = torch.cat(s0)
        loss: dict[str, Tensor] = {}
        for keyword in k1:
            delta, s = self.anonymize_step(s, keyword, mechanism, eps, window, blocks)
            loss[f"anonymize:{keyword}"] = delta.float().abs().mean(dim=(1, 2))
        s_m = s
        for keyword in k2:
            delta, s = self.recover_step(s, s_all0, keyword, origin)
            loss[f"recover:{keyword}"] = delta.float().abs().mean(dim=(1, 2))

        identity_method = mechanism if kw.IDENTITY in k1 else "none"
        uses_budget = identity_method in ("window", "strict", "laplace")
        results = []
        rows = [samples * n for n in counts]
        for i, ((_, seed_kept, seed_source), n) in enumerate(zip(generators, counts)):
            record = PrivacyRecord(
                anonymize=list(k1), recover=list(k2), mechanism=identity_method,
                epsilon=eps if uses_budget else None,
                rank_window=list(window) if identity_method in MECHANISMS else None,
                seed=seed_kept, seed_source=seed_source, samples=samples,
                extra={"attribute_anonymizer": "k-farthest sub-category mean (KAA)"}
                if any(k != kw.IDENTITY for k in k1) else {})
            shape = (samples, n, *self.feature_shape)
            take = slice(sum(rows[:i]), sum(rows[:i + 1]))
            results.append(ReorganizeResult(
                anonymized=s_m[take].float().reshape(shape),
                recovered=s[take].float().reshape(shape), record=record,
                information_loss={k: v[take].reshape(samples, n) for k, v in loss.items()}))
        return results

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
        """Load a bundle from a local folder or a Hub repo id (strict; ``map_location`` places
        the model, ``dtype`` sets CDFNet's dtype, the anonymizers' statistics stay float32)."""
        path = str(pretrained_model_name_or_path)
        looks_local = (os.path.isabs(path) or path.startswith(".") or os.path.exists(path)
                       or path.startswith("~"))
        if looks_local:
            path = os.path.expanduser(path)
            if not os.path.isdir(path):
                raise BundleError(f"{path} is not a folder with an LReOrg bundle (config.json + "
                                  f"model.safetensors). {NO_BUNDLE_ADVICE}")
            _read_config(os.path.join(path, constants.CONFIG_NAME), path)
        elif not kwargs.get("local_files_only") and not hub_reachable():
            # One short probe instead of huggingface_hub's ~23 s of retries: use the cache.
            kwargs["local_files_only"] = True
        revision = kwargs.get("revision")
        try:
            return super().from_pretrained(path, **kwargs)
        except (LocalEntryNotFoundError, OfflineModeIsEnabled) as e:
            raise _offline_error(path, revision) from e
        except (RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError) as e:
            raise _not_on_hub_error(path, revision, e) from e
        except HFValidationError as e:
            raise BundleError(f"{path!r} is neither a folder nor a valid Hub repo id "
                              f"(namespace/name). {NO_BUNDLE_ADVICE}") from e
        except json.JSONDecodeError as e:  # the Hub copy's config.json (local ones: above)
            raise BundleError(f"config.json of the bundle {path!r} is not valid JSON ({e})") \
                from e

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir, force_download: bool,
                         local_files_only: bool, token, map_location: str | torch.device = "cpu",
                         strict: bool = True, dtype: torch.dtype | None = None, **model_kwargs):
        """Strict by default (the mixin's default silently keeps random weights for missing
        tensors), and the model ends on ``map_location`` (the mixin only reads tensors there)."""
        if os.path.isdir(model_id):
            _read_config(os.path.join(model_id, constants.CONFIG_NAME), model_id)
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
        _check_config(model_kwargs, f"config.json of {model_id}")
        try:
            with torch.device("meta"):  # shapes only: nothing allocated before the checks
                shapes = cls(**model_kwargs)
        except (TypeError, ValueError) as e:
            raise BundleError(f"config.json of {model_id} does not describe a valid bundle: "
                              f"{e}") from None
        cls._check_weights_match(shapes, model_file)
        model = cls(**model_kwargs)
        try:
            load_model(model, model_file, strict=strict)
        except (SafetensorError, OSError, RuntimeError) as e:
            raise BundleError(f"{model_file} could not be read: it is corrupted or truncated "
                              f"({e}); download the bundle again") from None
        cls._check_finite(model, model_file)
        model.to(device=map_location)
        if dtype is not None:  # CDFNet only: the anonymizers' statistics stay float32
            model.cdfnet.to(dtype=dtype)
        model.eval()
        return model

    @staticmethod
    def _check_finite(model: nn.Module, model_file: str) -> None:
        """Refuse NaN / ∞ weights: they would turn every output face into NaN pixels."""
        bad = [k for k, t in model.state_dict().items()
               if t.is_floating_point() and not bool(torch.isfinite(t).all())]
        if bad:
            raise BundleError(f"{model_file} holds non-finite values (NaN or ∞) in "
                              f"{len(bad)} tensor(s), e.g. {', '.join(bad[:5])}; the weights "
                              f"are damaged")

    @staticmethod
    def _check_weights_match(model: nn.Module, model_file: str) -> None:
        """Compare the file's tensor names and shapes with the model built from config.json."""
        try:
            with safe_open(model_file, framework="pt") as fh:
                found = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
        except (SafetensorError, OSError) as e:
            raise BundleError(f"{model_file} is not a readable safetensors file: it is "
                              f"corrupted or truncated ({e}); download the bundle again") \
                from None
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
