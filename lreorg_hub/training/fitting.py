"""Fitting the anonymizers of a trained bundle (SPEC §4) on synthetic faces only.

The GIA member bank is published with the bundle, so it must hold synthetic identities:
latents come from the generator's mapping network (W codes, the same for every W+ row), never
from encoded photos. ``check_synthetic_codes`` refuses W+ codes whose rows differ, which is
what encoder (e4e) codes look like.

- GIA: CDFNet forward with k = identity on the sampled latents; k-means of the identity key
  features into the bundle's m groups; centres and a member bank kept.
- KAA: each sampled face G(s) is labelled with CLIP zero-shot over each attribute keyword's
  sub-category prompts (argmax of D(I, t_j)); the keyword's key features are averaged per
  sub-category.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from ..method import keywords as kw
from ..method.fitting import (SyntheticCodesError, _features, check_synthetic_codes,
                              fit_attribute_anonymizer, fit_identity_anonymizer)

__all__ = ["SyntheticCodesError", "check_synthetic_codes", "sample_mapping_codes",
           "fit_identity_anonymizer", "fit_attribute_anonymizer", "zero_shot_labels",
           "FitReport", "fit_anonymizers"]


@torch.no_grad()
def sample_mapping_codes(generator, count: int, rng: torch.Generator | None = None,
                         truncation: float = 1.0) -> Tensor:
    """``count`` W codes from the generator's mapping network, (count, style_dim), drawn with
    ``rng`` on the generator's device (a generator on that device; OS entropy when None).

    Truncation ψ < 1 pulls them towards the average latent (needs ``generator.mean_latent``).
    """
    if rng is None:
        rng = torch.Generator(device=generator.device)
        rng.seed()
    avg = generator.mean_latent(4096, generator=rng) if truncation != 1.0 else None
    return generator.sample_w(count, generator=rng, truncation=truncation,
                              truncation_latent=avg)


@torch.no_grad()
def zero_shot_labels(generator, clip, codes: Tensor, keywords: list[str], batch_size: int = 16,
                     output_size: int | None = None, noise_mode: str = "const",
                     progress=None) -> dict[str, Tensor]:
    """CLIP zero-shot D(G(s), t_j) for each keyword, {keyword: probabilities (N, C)}.

    Each face is rendered and embedded once; every keyword's prompts score that embedding.
    """
    texts = {k: clip.prompt_embeddings(k) for k in keywords}
    probs: dict[str, list[Tensor]] = {k: [] for k in keywords}
    scale = clip.model.logit_scale.exp()
    for chunk in codes.split(batch_size):
        images = generator(chunk.to(generator.device), noise_mode=noise_mode,
                           output_size=output_size)
        image = clip.encode_image(images.clamp(-1, 1))
        for k in keywords:
            probs[k].append((scale * image @ texts[k].T).softmax(-1).cpu())
        if progress is not None:
            progress.update(chunk.shape[0])
    return {k: torch.cat(v) for k, v in probs.items()}


@dataclass
class FitReport:
    """What fitting produced: group sizes (all samples and member bank) and label balance."""

    num_samples: int
    group_sizes: list[int]
    member_group_sizes: list[int]
    label_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    mean_confidence: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    source: str = "mapping network"

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        sizes = self.group_sizes
        lines = [f"fitted on {self.num_samples} {self.source} samples",
                 f"identity groups: {len(sizes)}, sizes min {min(sizes)} / median "
                 f"{sorted(sizes)[len(sizes) // 2]} / max {max(sizes)}; member bank "
                 f"{sum(self.member_group_sizes)}"]
        for name, counts in self.label_counts.items():
            total = sum(counts.values())
            share = ", ".join(f"{c} {n / total:.0%}" for c, n in counts.items())
            lines.append(f"{name}: {share} (mean CLIP confidence "
                         f"{self.mean_confidence[name]:.2f})")
        return "\n".join(lines)


def fit_anonymizers(model, generator, clip, num_samples: int = 10_000,
                    keywords: list[str] | None = None, seed: int | None = None,
                    iterations: int = 50, batch_size: int = 16, output_size: int | None = None,
                    progress: bool = True) -> FitReport:
    """Fit GIA and the KAA of each attribute keyword (default: all of the bundle's) on
    ``num_samples`` faces sampled from the generator's mapping network.

    Random draws: latents on the generator's device, k-means on the CPU, both from ``seed``
    (OS entropy when None; the seed is not recorded). ``output_size`` renders the faces CLIP
    labels at an earlier generator block (faster, coarser).
    """
    from tqdm.auto import tqdm

    names = list(model.keywords) if keywords is None else \
        [kw.get(k, model.keywords).name for k in keywords]
    if num_samples < model.identity_anonymizer.num_members and kw.IDENTITY in names:
        raise ValueError(f"num_samples={num_samples} is below the bundle's member bank size "
                         f"{model.identity_anonymizer.num_members}")
    tic = time.perf_counter()
    base = torch.Generator()
    if seed is None:
        base.seed()
    else:
        base.manual_seed(int(seed))
    latent_rng = torch.Generator(device=generator.device).manual_seed(
        int(torch.randint(2 ** 62, (1,), generator=base)))
    kmeans_rng = torch.Generator().manual_seed(int(torch.randint(2 ** 62, (1,), generator=base)))
    codes = sample_mapping_codes(generator, num_samples, latent_rng)
    codes = codes.unsqueeze(1).expand(-1, model.cdfnet.num_rows, -1)
    report = FitReport(num_samples=num_samples, group_sizes=[], member_group_sizes=[])
    was_training = model.training
    model.eval()
    if kw.IDENTITY in names:
        features = _features(model, codes, kw.IDENTITY, 1024)
        gia = model.identity_anonymizer.fit(features, iterations, kmeans_rng)
        labels = torch.cdist(features.flatten(1).double(),
                             gia.centres.flatten(1).double().cpu()).argmin(-1)
        report.group_sizes = torch.bincount(labels, minlength=gia.num_groups).tolist()
        report.member_group_sizes = torch.bincount(gia.member_group.cpu(),
                                                   minlength=gia.num_groups).tolist()
    attributes = [n for n in names if n != kw.IDENTITY]
    if attributes:
        with tqdm(total=num_samples, desc="CLIP labels", unit="face",
                  disable=not progress) as bar:
            probs = zero_shot_labels(generator, clip, codes, attributes, batch_size,
                                     output_size, progress=bar)
        for name in attributes:
            labels = probs[name].argmax(-1)
            subs = kw.KEYWORDS[name].subcategories
            counts = torch.bincount(labels, minlength=len(subs)).tolist()
            report.label_counts[name] = dict(zip(subs, counts))
            report.mean_confidence[name] = float(probs[name].max(-1).values.mean())
            if min(counts) == 0:
                raise ValueError(f"CLIP labelled no sampled face as "
                                 f"{', '.join(s for s, c in zip(subs, counts) if c == 0)} "
                                 f"for {name!r} (counts {dict(zip(subs, counts))}): sample "
                                 f"more faces or check the CLIP weights")
            fit_attribute_anonymizer(model, name, codes, labels)
    model.train(was_training)
    report.seconds = time.perf_counter() - tic
    return report
