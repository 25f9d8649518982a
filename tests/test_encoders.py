"""encoders.py with random weights: a tiny CLIP through open_clip's own factory, and the real
InceptionResnetV1 architecture; offline behaviour of the weight loaders."""

from __future__ import annotations

import time
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

from lreorg_hub import scorers as encoders
from lreorg_hub.scorers import IdentityEncoder, KeywordEncoder, WeightsUnavailableError
from lreorg_hub.image.io import pil_to_tensor
from lreorg_hub.method.keywords import KEYWORDS
from lreorg_hub.method.keywords import Keyword

# Two layers, width 64: the real open_clip CLIP class with a small config. The vocabulary stays
# CLIP's (the shipped BPE tokenizer emits ids up to 49407).
TINY_CLIP = dict(
    embed_dim=32,
    vision_cfg=dict(image_size=32, layers=2, width=64, patch_size=8, head_width=32),
    text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=2, layers=2),
)


@pytest.fixture(scope="module")
def clip() -> KeywordEncoder:
    # open_clip initialises from the global RNG: seed it inside a fork so no state leaks out
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return KeywordEncoder(pretrained=None, model_cfg=TINY_CLIP)


@pytest.fixture(scope="module")
def facenet() -> IdentityEncoder:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return IdentityEncoder(pretrained=None)


def images(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, h, w, generator=g) * 2 - 1


# --- CLIP -----------------------------------------------------------------------------------------


def test_clip_config_and_preprocessing(clip):
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    assert clip.image_size == (32, 32) and clip.embed_dim == 32
    cfg = clip.preprocess_config
    assert cfg["image_size"] == [32, 32] and cfg["resize_mode"] == "shortest"
    np.testing.assert_allclose(clip.mean.flatten().numpy(), OPENAI_DATASET_MEAN, rtol=1e-6)
    np.testing.assert_allclose(clip.std.flatten().numpy(), OPENAI_DATASET_STD, rtol=1e-6)
    assert all(not p.requires_grad for p in clip.parameters())
    assert not clip.train().training  # stays in eval mode
    for h, w in ((32, 32), (100, 60), (20, 90)):
        assert clip.preprocess(images(2, h, w)).shape == (2, 3, 32, 32)
    # a constant image normalises to (value − mean)/std exactly
    gray = torch.zeros(1, 3, 50, 50)
    expect = (0.5 - clip.mean) / clip.std
    torch.testing.assert_close(clip.preprocess(gray), expect.expand(1, 3, 32, 32))


def test_text_embeddings_unit_norm(clip):
    e = clip.encode_text(["a photo of a face.", "smiling", "x"])
    assert e.shape == (3, 32)
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(3))


def test_keyword_embeddings_use_condition_text(clip):
    names = list(KEYWORDS)
    k = clip.keyword_embeddings(names)
    assert k.shape == (len(names), 32)
    torch.testing.assert_close(k, clip.encode_text([KEYWORDS[n].condition_text for n in names]))
    torch.testing.assert_close(clip.keyword_embeddings(["Hair_Color"]), k[names.index("hair color")][None])
    free = clip.keyword_embeddings([Keyword("glasses", ("glasses", "no glasses"))])
    torch.testing.assert_close(free, clip.encode_text(["glasses"]))
    with pytest.raises(ValueError, match="unknown keyword"):
        clip.keyword_embeddings(["beard"])


@pytest.mark.parametrize("name", [n for n, k in KEYWORDS.items() if k.subcategories])
def test_zero_shot_is_a_distribution_over_subcategories(clip, name):
    p = clip.zero_shot(images(3, 48, 48), name)
    assert p.shape == (3, len(KEYWORDS[name].subcategories))
    assert (p >= 0).all()
    torch.testing.assert_close(p.sum(dim=-1), torch.ones(3))


def test_zero_shot_matches_clip_logits(clip):
    x = images(2, 40, 40)
    text = clip.encode_text(list(KEYWORDS["age"].prompts))
    img = clip.model.encode_image(clip.preprocess(x), normalize=True)
    expect = (clip.model.logit_scale.exp() * img @ text.T).softmax(-1)
    torch.testing.assert_close(clip.zero_shot(x, "age"), expect)
    with pytest.raises(ValueError, match="no sub-categories"):
        clip.zero_shot(x, "identity")


def test_zero_shot_gradients_reach_the_image(clip):
    x = images(2, 64, 64).requires_grad_(True)
    p = clip.zero_shot(x, "gender")
    (-(p[:, 0].log())).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_pil_input_equals_tensor_input(clip):
    arr = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    torch.testing.assert_close(clip.encode_image(img), clip.encode_image(pil_to_tensor(img)[None]))
    assert clip.encode_image([img, Image.fromarray(arr[:30])]).shape == (2, 32)


def test_clip_local_checkpoint_path(clip, tmp_path):
    path = tmp_path / "tiny_clip.pt"
    torch.save(clip.model.state_dict(), path)
    again = KeywordEncoder(pretrained=path, model_cfg=TINY_CLIP)
    torch.testing.assert_close(again.encode_text(["old"]), clip.encode_text(["old"]))


def test_clip_offline_tag_fails_fast_with_guidance(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as info:
        KeywordEncoder("ViT-B-32", "laion2b_s34b_b79k", model_cfg=TINY_CLIP, cache_dir=str(tmp_path))
    assert time.perf_counter() - start < 10
    msg = str(info.value)
    for part in ("ViT-B-32", "laion2b_s34b_b79k", "offline", "pretrained='/path/to/"):
        assert part in msg


def test_clip_unknown_tag_lists_known_tags():
    with pytest.raises(WeightsUnavailableError, match="laion2b_s34b_b79k"):
        KeywordEncoder("ViT-B-32", "no-such-tag", model_cfg=TINY_CLIP)


# --- facenet --------------------------------------------------------------------------------------


def test_identity_embeddings(facenet):
    for h, w in ((160, 160), (256, 256), (90, 120)):
        e = facenet.embed(images(2, h, w))
        assert e.shape == (2, 512)
        torch.testing.assert_close(e.norm(dim=-1), torch.ones(2))
    assert all(not p.requires_grad for p in facenet.parameters())
    assert not facenet.train().training


def test_identity_distance(facenet):
    x = images(3, 128, 128)
    a = facenet.embed(x)
    d_self = facenet.cosine_distance(a, facenet.embed(x))
    assert d_self.shape == (3,) and d_self.abs().max() < 1e-5
    # random weights barely separate inputs, but different images are still not at distance 0
    d_other = facenet.cosine_distance(a, a.roll(1, dims=0))
    assert (d_other > 0).all() and d_other.min() > d_self.abs().max()
    torch.testing.assert_close(facenet.cosine_distance(torch.tensor([[1.0, 0]]), torch.tensor([[0.0, 3]])),
                               torch.tensor([1.0]))


def test_identity_matches_facenet_forward_and_features(facenet):
    x = images(2, 160, 160)
    emb, feats = facenet.embed_and_features(x)
    torch.testing.assert_close(emb, facenet.net(facenet.preprocess(x)))  # same as facenet's forward
    assert [f.shape[1] for f in feats] == [64, 256, 256, 896, 1792]
    assert all(f.shape[0] == 2 for f in feats)
    assert len(facenet.features(x)) == len(facenet.feature_layers)
    with pytest.raises(ValueError, match="unknown feature layer"):
        IdentityEncoder(pretrained=None, feature_layers=("nope",))


def test_identity_gradients_reach_the_image(facenet):
    x = images(2, 256, 256).requires_grad_(True)
    emb, feats = facenet.embed_and_features(x)
    loss = facenet.cosine_distance(emb[:1], emb[1:]).sum() + sum(f.pow(2).mean() for f in feats)
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_identity_crop():
    enc = IdentityEncoder(pretrained=None, crop=encoders.FFHQ_FACE_CROP)
    x = images(1, 256, 256)
    inner = x[..., 35:223, 32:220]  # pSp's crop of a 256 FFHQ-aligned face
    plain = IdentityEncoder(pretrained=None)
    torch.testing.assert_close(enc.preprocess(x), plain.preprocess(inner))
    with pytest.raises(ValueError):
        IdentityEncoder(pretrained=None, crop=(0.5, 0.0, 0.2, 1.0))


def test_identity_local_weights_with_vggface2_layout(tmp_path):
    """The published file holds the 8631-class head too; it must be dropped, the rest strict."""
    from facenet_pytorch import InceptionResnetV1

    with torch.random.fork_rng():
        torch.manual_seed(1)
        full = InceptionResnetV1(pretrained=None, classify=True, num_classes=8631).eval()
    path = tmp_path / "20180402-114759-vggface2.pt"
    torch.save(full.state_dict(), path)
    enc = IdentityEncoder(pretrained=str(path))
    x = images(1, 160, 160)
    full.classify = False
    with torch.no_grad():
        torch.testing.assert_close(enc.embed(x), full(enc.preprocess(x)))


def test_identity_offline_message(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty cache
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # try the "network"

    def no_network(url, dst, *args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(WeightsUnavailableError) as info:
        IdentityEncoder(pretrained="vggface2")
    msg = str(info.value)
    assert "could not download" in msg and "looks offline" in msg and "Name or service" in msg
    assert "20180402-114759-vggface2.pt" in msg and "pretrained='/path/to/" in msg
    with pytest.raises(WeightsUnavailableError, match="downloads are disabled"):
        IdentityEncoder(pretrained="vggface2", allow_download=False)
    with pytest.raises(WeightsUnavailableError, match="no such file"):
        IdentityEncoder(pretrained=str(tmp_path / "nothing.pt"))


def test_identity_hub_offline_mode_does_not_try_the_network(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(torch.hub, "download_url_to_file",
                        lambda *a, **k: pytest.fail("download attempted in offline mode"))
    with pytest.raises(WeightsUnavailableError, match="HF_HUB_OFFLINE"):
        IdentityEncoder(pretrained="vggface2")


def test_identity_uses_cached_published_file(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    with torch.random.fork_rng():
        torch.manual_seed(2)
        net = IdentityEncoder(pretrained=None).net
    torch.save(net.state_dict(), tmp_path / "checkpoints" / "20180408-102900-casia-webface.pt")
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("downloaded"))
    enc = IdentityEncoder(pretrained="casia-webface")
    torch.testing.assert_close(enc.net.last_linear.weight, net.last_linear.weight)


# --- full size (timing; deselected by default) ------------------------------------------------------


@pytest.mark.slow
def test_full_size_clip_vit_b32_random_weights():
    enc = KeywordEncoder("ViT-B-32", pretrained=None)
    assert enc.image_size == (224, 224) and enc.embed_dim == 512
    x = images(4, 256, 256).requires_grad_(True)
    p = enc.zero_shot(x, "hair color")
    assert p.shape == (4, 4)
    p[:, 0].sum().backward()
    assert x.grad.abs().sum() > 0
