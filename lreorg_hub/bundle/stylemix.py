"""Fitted style-mix groups on disk and on the Hub (the method is
``lreorg_hub.method.stylemix``): the same ``PyTorchModelHubMixin`` files and the same strict
loading as the LReOrg bundle (config.json + model.safetensors + a card)."""

from __future__ import annotations

from pathlib import Path

from ..method.checks import check_epsilon
from ..method.stylemix import StyleMixModule
from .checks import BundleError, int_in
from .hub_model import StrictHubModel

__all__ = ["StyleMixAnonymizer"]

_MAX_ELEMENTS = 2**31  # 8 GiB of float32: far above any real member bank


class StyleMixAnonymizer(StyleMixModule, StrictHubModel,
                         library_name="lreorg-hub", license="mit",
                         tags=["face-anonymization", "privacy", "differential-privacy",
                               "stylegan2", "style-mix"]):
    """Fitted style-mix groups (``StyleMixModule``) that save to and load from a folder or the
    Hub: ``save_pretrained(dir)``, ``from_pretrained(dir or repo id)``, ``push_to_hub``."""

    what = "style-mix group folder"
    a_what = "a style-mix group folder"
    advice = ("Fit the groups on the backbone's generator with `lreorg fit-style-mix DIR`, or "
              "write the offline demo with `lreorg demo-bundle DIR` (DIR/style_mix).")

    def save_pretrained(self, save_directory: str | Path, **kwargs) -> Path:
        """Write config.json, model.safetensors and a card (fitted groups only)."""
        if not self.fitted:
            raise RuntimeError("refusing to save unfitted style-mix groups")
        kwargs.setdefault("config", self.get_config())
        super().save_pretrained(save_directory, **kwargs)
        return Path(save_directory)

    @classmethod
    def check_config(cls, config: dict, where: str) -> None:
        groups = int_in(config.get("num_groups", 64), 1, 65_536, "num_groups", where)
        members = int_in(config.get("num_members", 1024), groups, 1_000_000, "num_members",
                         where)
        dim = int_in(config.get("style_dim", 512), 1, 4096, "style_dim", where)
        int_in(config.get("num_rows", 18), 1, 64, "num_rows", where)
        if (members + groups) * dim > _MAX_ELEMENTS:
            raise BundleError(f"{where}: num_members and style_dim ask for a member bank of "
                              f"{(members + groups) * dim * 4 / 2**30:.0f} GiB; refusing")
        try:
            check_epsilon(config.get("epsilon", 1.0))
        except ValueError as e:
            raise BundleError(f"{where}: {e}") from None

    def state_problems(self) -> list[str]:
        problems = [f"groups.{p}" for p in self.groups.state_problems()]
        if not self.fitted:
            problems.append("groups.fitted is False: the groups were never fitted")
        return problems
