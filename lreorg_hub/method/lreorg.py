"""LReOrg in latent space: CDFNet + anonymizers + keyword embeddings, and ``reorganize``
(SPEC §1): anonymous reorganization (AR) then recovery reorganization (RR). It never sees
pixels and never reads a file; ``lreorg_hub.bundle.LReOrg`` adds config.json, safetensors and
the Hub on top of it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor, nn

from ..privacy import PrivacyRecord
from . import keywords as kw
from .anonymizers import (AttributeAnonymizer, IdentityAnonymizer,
                          KAnonymityIdentityAnonymizer, LaplaceIdentityAnonymizer)
from .cdfnet import CDFNet
from .checks import check_epsilon, check_rank_window, check_samples
from .mechanisms import MECHANISMS
from .rng import fresh_generator, make_generator, normal

__all__ = ["LReOrgModule", "ReorganizeResult", "IDENTITY_METHODS", "DEFAULT_BACKBONE",
           "DEFAULT_TEXT_ENCODER"]

#: How a bundle may replace the identity key feature: GIA's group draw (``mechanism`` window
#: or strict), or one of the latent baselines.
IDENTITY_METHODS = ("gia", "laplace", "k-anonymity")


DEFAULT_BACKBONE = {
    "repo_id": "AIRI-Institute/HairFastGAN",
    "filename": "pretrained_models/encoder4editing/e4e_ffhq_encode.pt",
    "revision": "main",
    "format": "e4e",
    "size": 1024,
}


DEFAULT_TEXT_ENCODER = {"model_name": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"}


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


class LReOrgModule(nn.Module):
    """The LReOrg face-privacy model in latent space (no files: see ``lreorg_hub.bundle.LReOrg``).

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
                            **config) -> "LReOrgModule":
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

    def anonymize_step(self, s: Tensor, keyword: str, identity: str = "gia",
                       mechanism: str = "window", epsilon: float = 1.0,
                       rank_window: tuple[int, int] = (2, 16),
                       generator: torch.Generator | Sequence[tuple[torch.Generator, int]]
                       | None = None, replacement: Tensor | None = None
                       ) -> tuple[Tensor, Tensor]:
        """One AR step: (f, r) = CDFNet(s, k); f̂ = A_k(f); (Δr, s') = CDFNet⁻¹(f̂, r, k).

        For identity, A_k is ``identity`` ("gia" with ``mechanism`` "window" or "strict",
        "laplace" or "k-anonymity"); for an attribute, KAA. ``generator`` may also be a list
        of (generator, rows): consecutive blocks of s drawn with their own generator (many
        photos in one CDFNet pass, each with its own coins). ``replacement``: f̂ for identity
        drawn beforehand (:meth:`draw_identity`), used instead of a draw. The anonymizer sees
        f in float32 whatever CDFNet's dtype: its distances and the mechanism's scores are
        never rounded to half precision."""
        f, r = self.disentangle(s, keyword)
        f = f.float()
        if keyword != kw.IDENTITY:
            f_hat = self.attribute_anonymizer(keyword)(f)
        elif replacement is not None:  # drawn beforehand (a video track's one draw)
            if tuple(replacement.shape) != tuple(f.shape):
                raise ValueError(f"identity replacements must have shape {tuple(f.shape)}, "
                                 f"got {tuple(replacement.shape)}")
            f_hat = replacement.to(f)
        else:
            blocks = generator if isinstance(generator, (list, tuple)) else \
                [(generator, f.shape[0])]
            if sum(rows for _, rows in blocks) != f.shape[0]:
                raise ValueError(f"generator blocks cover {sum(r for _, r in blocks)} rows, "
                                 f"the codes have {f.shape[0]}")
            parts = f.split([rows for _, rows in blocks])
            f_hat = torch.cat([self._replace_identity(part, identity, mechanism, epsilon,
                                                      rank_window, g)
                               for part, (g, _) in zip(parts, blocks)])
        return self.fuse(f_hat, r, keyword)

    def _replace_identity(self, f: Tensor, identity: str, mechanism: str, epsilon: float,
                          rank_window: tuple[int, int],
                          generator: torch.Generator | None) -> Tensor:
        """f̂ for each row of the identity key feature f (float32): GIA's draw, Laplace
        noise, or k-anonymity's farthest centre (deterministic)."""
        if identity == "k-anonymity":
            return self.k_anonymity_anonymizer(f, self.identity_anonymizer)
        if identity == "laplace":
            return self.laplace_anonymizer(f, epsilon, generator)
        return self.identity_anonymizer(f, epsilon, rank_window, mechanism, generator)

    def _draw_settings(self, identity: str, mechanism: str, epsilon: float | None,
                       rank_window: Sequence[int] | None) -> tuple[float, tuple[int, int]]:
        """(ε, window) checked, the bundle's defaults for None."""
        if identity not in IDENTITY_METHODS:
            raise ValueError(f"identity must be one of {', '.join(IDENTITY_METHODS)}, got "
                             f"{identity!r}")
        if mechanism not in MECHANISMS:
            raise ValueError(f"mechanism must be one of {', '.join(MECHANISMS)}, got "
                             f"{mechanism!r}")
        eps = check_epsilon(self.default_epsilon if epsilon is None else epsilon)
        window = check_rank_window(tuple(rank_window or self.default_rank_window),
                                   self.identity_anonymizer.num_groups)
        return eps, window

    # -- one draw applied to many codes (a video track, SPEC §9) ----------------------------
    @torch.no_grad()
    def identity_features(self, codes: Tensor) -> Tensor:
        """The identity key feature f of each code (N, L, 512) or (N, 512), float32: what
        GIA ranks the groups by. A video track's draw uses the mean over its frames."""
        s = self.cdfnet._rows(codes.to(self.device, torch.float32), "codes")
        return self.disentangle(s, kw.IDENTITY)[0].float()

    @torch.no_grad()
    def draw_identity(self, features: Tensor, identity: str = "gia",
                      mechanism: str = "window", epsilon: float | None = None,
                      rank_window: Sequence[int] | None = None,
                      generator: torch.Generator | None = None) -> Tensor:
        """One identity replacement f̂ per row of ``features`` (N, L, 512), drawn as
        :meth:`reorganize` draws it (``identity``: "gia", "laplace", "k-anonymity"). Each row
        is one draw and spends ε; pass the result to ``reorganize_many(identities=...)`` to
        apply it to many codes (every frame of a video track) without drawing again."""
        eps, window = self._draw_settings(identity, mechanism, epsilon, rank_window)
        f = features.to(self.device, torch.float32).reshape(-1, *self.feature_shape)
        generator = generator if generator is not None else fresh_generator()
        return self._replace_identity(f, identity, mechanism, eps, window, generator)

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
    def reorganize(self, codes: Tensor,
                   anonymize: Sequence[str] | str | None = kw.DEFAULT_ANONYMIZE,
                   recover: Sequence[str] | str | None = kw.DEFAULT_RECOVER,
                   epsilon: float | None = None, rank_window: Sequence[int] | None = None,
                   identity: str = "gia", mechanism: str = "window", seed: int | None = None,
                   samples: int = 1) -> ReorganizeResult:
        """Anonymize the K1 keywords of W / W+ codes, then recover the K2 keywords (SPEC §1).

        Args:
            codes: s⁰ of shape (N, L, 512) or (N, 512).
            anonymize: K1, run in the order given (identity first).
            recover: K2, run in the order given.
            epsilon: GIA / Laplace privacy budget (default: the bundle's).
            rank_window: GIA window (a, b) (default: the bundle's).
            identity: how identity is replaced: "gia" (the paper), or the baselines "laplace"
                and "k-anonymity".
            mechanism: GIA's draw: "window" (the paper: ranks a..b only) or "strict" (ε-LDP
                over all groups).
            seed: seeds the one torch.Generator of the call; None (default) draws it from OS
                entropy and does not keep it (the record says so; the ε-DP guarantee needs
                secret coins). A seed you give is recorded with a warning not to publish it;
                a ``SecretSeed`` seeds the draw without being recorded.
            samples: how many independent draws per face (diverse outputs); releasing all of
                them spends samples·ε (the record's ``epsilon_total``).
        """
        return self.reorganize_many([codes], [seed], anonymize, recover, epsilon=epsilon,
                                    rank_window=rank_window, identity=identity,
                                    mechanism=mechanism, samples=samples)[0]

    @torch.no_grad()
    def reorganize_many(self, codes: Sequence[Tensor], seeds: Sequence[int | None],
                        anonymize: Sequence[str] | str | None = kw.DEFAULT_ANONYMIZE,
                        recover: Sequence[str] | str | None = kw.DEFAULT_RECOVER,
                        epsilon: float | None = None,
                        rank_window: Sequence[int] | None = None, identity: str = "gia",
                        mechanism: str = "window", samples: int = 1,
                        identities: Sequence[Tensor] | None = None
                        ) -> list[ReorganizeResult]:
        """:meth:`reorganize` for many photos at once: ``codes[i]`` (N_i, L, 512) drawn with
        ``seeds[i]`` (None: OS entropy), one result per photo, in order.

        Every CDFNet pass takes the faces and samples of all photos together; only the DP
        draw runs per photo, with that photo's own generator, so each result is what
        ``reorganize(codes[i], seed=seeds[i])`` gives (up to float rounding of the larger
        batch).

        ``identities[i]``: the identity replacements f̂ (N_i, L, 512) of photo i's faces,
        drawn beforehand with :meth:`draw_identity` (e.g. once per video track, SPEC §9):
        identity is then not drawn here (samples must be 1, the seeds must be None and the
        records say that no draw ran: the caller's record states the draws); the other
        keywords run as usual, on each code's own residual.
        """
        k1, k2 = kw.validate_selection(anonymize, recover, self.keywords)
        eps, window = self._draw_settings(identity, mechanism, epsilon, rank_window)
        samples = check_samples(samples, upper=2**16)
        if len(codes) != len(seeds):
            raise ValueError(f"{len(codes)} code tensors but {len(seeds)} seeds")
        generators = [make_generator(seed) for seed in seeds]
        fixed = None
        if identities is not None:
            if len(identities) != len(codes) or samples != 1 or any(
                    seed is not None for seed in seeds) or kw.IDENTITY not in k1:
                raise ValueError("identities: one replacement tensor per code tensor, with "
                                 "identity anonymized, samples=1 and no seeds (nothing is "
                                 "drawn)")
            fixed = torch.cat([i.to(self.device, torch.float32).reshape(-1, *self.feature_shape)
                               for i in identities])
            generators = [(g, None, "none") for g, _, _ in generators]

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
            delta, s = self.anonymize_step(s, keyword, identity, mechanism, eps, window, blocks,
                                           fixed if keyword == kw.IDENTITY else None)
            loss[f"anonymize:{keyword}"] = delta.float().abs().mean(dim=(1, 2))
        s_m = s
        for keyword in k2:
            delta, s = self.recover_step(s, s_all0, keyword, origin)
            loss[f"recover:{keyword}"] = delta.float().abs().mean(dim=(1, 2))

        replaced = identity if kw.IDENTITY in k1 else "none"
        uses_budget = replaced in ("gia", "laplace")
        results = []
        rows = [samples * n for n in counts]
        for i, ((_, seed_kept, seed_source), n) in enumerate(zip(generators, counts)):
            if not uses_budget and seed_source == "os-entropy":
                seed_source = "none"  # k-anonymity / KAA only: no coin was drawn
            record = PrivacyRecord(
                method="lreorg" if replaced in ("gia", "none") else replaced,
                anonymize=list(k1), recover=list(k2), identity=replaced,
                mechanism=mechanism if replaced == "gia" else None,
                epsilon=eps if uses_budget else None,
                rank_window=list(window) if replaced == "gia" else None,
                seed=seed_kept, seed_source=seed_source, samples=samples, faces=n,
                extra={"attribute_anonymizer": "k-farthest sub-category mean (KAA)"}
                if any(k != kw.IDENTITY for k in k1) else {})
            shape = (samples, n, *self.feature_shape)
            take = slice(sum(rows[:i]), sum(rows[:i + 1]))
            results.append(ReorganizeResult(
                anonymized=s_m[take].float().reshape(shape),
                recovered=s[take].float().reshape(shape), record=record,
                information_loss={k: v[take].reshape(samples, n) for k, v in loss.items()}))
        return results
