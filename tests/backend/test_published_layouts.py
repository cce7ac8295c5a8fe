"""The production loaders on tiny random models saved in the public repositories' exact
layouts (see :mod:`tests.backend.published_layouts`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest
import torch

from rs_reasoner import weight_files
from rs_reasoner.cli import main
from rs_reasoner.schemas import Mode
from rs_reasoner.segmenters import registry
from rs_reasoner.segmenters.builtin import BUILTIN_SPECS
from rs_reasoner.segmenters.hub_weights import PROMPTER_WEIGHTS, TRAINING_WEIGHTS, sam_weights
from rs_reasoner.segmenters.reasoning.prompter import QwenPrompter
from rs_reasoner.segmenters.reasoning.template import MODEL_SIZE
from rs_reasoner.segmenters.reasoning.tiny_qwen import tiny_processor, tiny_qwen
from rs_reasoner.weights import is_available
from tests.backend.published_layouts import (
    QWEN_PIXEL_BUDGET,
    as_hub_blobs,
    sam21_checkpoint,
    shrink_open_clip,
    snapshot_dir,
    tiny_dinov2,
    tiny_open_clip,
    write_dinov2,
    write_openai_clip_hub,
    write_published,
    write_remoteclip,
    write_sam21,
    write_think2seg,
)
from tests.backend.reasoning.helpers import random_image
from tests.support.rasters import neon_crop


class _TokenCounter:
    """Counts the positions the text decoder computes, over all forward calls."""

    def __init__(self, decoder: torch.nn.Module) -> None:
        self.calls = 0
        self.positions = 0
        self.handle = decoder.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, _module: Any, args: tuple, kwargs: dict) -> None:
        embeds = kwargs.get("inputs_embeds")
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.calls += 1
        self.positions += int((embeds if embeds is not None else ids).shape[1])


def test_think2seg_snapshot_decodes_with_the_cache_whatever_its_generation_config(
    empty_hub_cache: Path,
) -> None:
    processor = tiny_processor()
    reference = tiny_qwen(processor, seed=1)
    write_think2seg(snapshot_dir(empty_hub_cache, "RicardoString/Think2Seg-RS-3B"), reference,
                    processor)
    tokens = 8
    prompter = QwenPrompter.load("think2seg-rs-3b", max_new_tokens=tokens)
    # The 4.49 layout loaded: same weights as the model saved.
    loaded = dict(prompter.model.named_parameters())
    for name, value in reference.named_parameters():
        assert torch.equal(loaded[name], value), name
    assert prompter.model.generation_config.use_cache is False  # the snapshot's, kept
    # The image processor's pixel budget came from the 4.49 preprocessor_config.json
    # (min_pixels / max_pixels), not from the class defaults.
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    size = prompter.processor.image_processor.size
    assert size.longest_edge == QWEN_PIXEL_BUDGET["max_pixels"]
    assert size.longest_edge != Qwen2VLImageProcessor().size.longest_edge
    assert prompter.processor.chat_template == processor.chat_template

    image = random_image(MODEL_SIZE, MODEL_SIZE, seed=9)
    counter = _TokenCounter(prompter.model.model.language_model)
    out = prompter.generate(image, "ponds")
    counter.handle.remove()
    n, prompt = out.stats.new_tokens, out.stats.prompt_tokens
    assert n >= 2
    # Cached decoding: the prompt once, then one position per new token.
    assert counter.calls == n
    assert counter.positions == prompt + n - 1

    # The snapshot's own settings would recompute the whole sequence at every step.
    inputs = prompter.prepare(image, "ponds")
    uncached = _TokenCounter(prompter.model.model.language_model)
    with torch.inference_mode():
        prompter.model.generate(**inputs, max_new_tokens=n, min_new_tokens=n)
    uncached.handle.remove()
    assert uncached.positions == sum(prompt + i for i in range(n))
    assert uncached.positions > 2 * counter.positions


def test_think2seg_answer_is_greedy_not_the_snapshots_sampling(empty_hub_cache: Path) -> None:
    processor = tiny_processor()
    reference = tiny_qwen(processor, seed=2)
    write_think2seg(snapshot_dir(empty_hub_cache, "RicardoString/Think2Seg-RS-3B"), reference,
                    processor)
    image = random_image(MODEL_SIZE, MODEL_SIZE, seed=10)
    loaded = QwenPrompter.load("think2seg-rs-3b", max_new_tokens=6)
    plain = QwenPrompter.from_components(reference, processor, max_new_tokens=6)
    # repetition_penalty 1.05 and top_p 0.001 of the snapshot would change these tokens.
    assert loaded.generate(image, "ponds").text == plain.generate(image, "ponds").text
    assert PROMPTER_WEIGHTS["think2seg-rs-3b"].repo_id == "RicardoString/Think2Seg-RS-3B"


# -- every model `rs-reasoner models list` shows, in its published layouts ---------------------


@pytest.fixture(scope="session")
def sam21_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random SAM 2.1 hiera-small checkpoint in Meta's format, built once (184 MB)."""
    return sam21_checkpoint(tmp_path_factory.mktemp("sam21") / "sam2.1_hiera_small.pt")


@pytest.fixture
def small_clips(monkeypatch: pytest.MonkeyPatch) -> None:
    """open_clip builds ViT-B-16 and ViT-L-14 small (same tensor names)."""
    shrink_open_clip(monkeypatch)


def _rs_reasoner(cache: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    """The ``rs-reasoner`` command with only the shipped models (no test segmenters, no
    models trained here) and ``cache`` as the offline Hugging Face cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RS_REASONER_WEIGHTS_")}
    env |= {"HF_HUB_CACHE": str(cache), "HF_HOME": str(tmp / "hf_home"), "HF_HUB_OFFLINE": "1",
            "RS_REASONER_SEGMENTER_MODULES": "", "RS_REASONER_MODELS_DIR": str(tmp / "models")}
    return subprocess.run([sys.executable, "-m", "rs_reasoner.cli", *args], env=env,
                          capture_output=True, text=True, timeout=600, check=False)


def _listed(stdout: str) -> dict[str, str]:
    """``models list`` output → {model: weights status} (one header line per model)."""
    out = {}
    for line in stdout.splitlines():
        if line and not line[0].isspace():
            out[line.split()[0]] = next(
                s for s in ("weights present", "weights missing", "no weights needed")
                if line.rstrip().endswith(s)
            )
    return out


def test_every_listed_model_is_present_and_verified_in_its_published_layouts(
    empty_hub_cache: Path, tmp_path: Path, sam21_small: Path,
    small_clips: None, capsys: pytest.CaptureFixture,
) -> None:
    empty = _rs_reasoner(empty_hub_cache, tmp_path, "models", "list")
    assert empty.returncode == 0, empty.stderr
    listed = _listed(empty.stdout)
    needing = {name for name in listed if registry.get_spec(name).weights}
    assert needing and {listed[n] for n in needing} == {"weights missing"}
    assert _rs_reasoner(empty_hub_cache, tmp_path, "models", "verify").returncode == 1

    # Every repository of every model the command lists (and of training's backbones):
    # one without a fabricated layout fails here (KeyError naming it).
    repos = {w.repo_id for n in listed for w in registry.get_spec(n).weights}
    repos |= {w.repo_id for specs in TRAINING_WEIGHTS.values() for w in specs}
    for repo in sorted(repos):
        write_published(empty_hub_cache, repo, sam21_small)
        as_hub_blobs(empty_hub_cache, repo)  # blobs named by etag, as a download leaves them

    listing = _rs_reasoner(empty_hub_cache, tmp_path, "models", "list")
    present = _listed(listing.stdout)
    assert present.keys() == listed.keys()
    for name, status in present.items():
        assert status == ("weights present" if name in needing else "no weights needed"), name
    verified = _rs_reasoner(empty_hub_cache, tmp_path, "models", "verify")
    assert verified.returncode == 0, verified.stderr
    assert set(verified.stdout.split()) >= {f"{name}:" for name in listed}
    assert verified.stdout.count(": ok") == len(listed)
    for specs in TRAINING_WEIGHTS.values():
        assert all(map(is_available, specs))
    # The model manager's byte check: every file of every weight set against its etag.
    for spec in {w for n in listed for w in registry.get_spec(n).weights}:
        checks = weight_files.verify(spec)
        assert checks and all(c.ok and c.detail.endswith("matches") for c in checks), checks

    # `models verify NAME` also loads the model, through its production loader, on the CPU.
    for name in sorted(listed):
        assert main(["models", "verify", name]) == 0, capsys.readouterr().err
        assert capsys.readouterr().out.strip() == f"{name}: ok"


@pytest.fixture
def raster(shared_data: Path, tmp_path: Path) -> Path:
    """A 96 x 80 crop of the NEON 10 cm orthophoto."""
    return neon_crop(shared_data, tmp_path / "crop.tif", 96, 80)


@pytest.mark.parametrize(
    ("model", "query"),
    [(s.name, "vegetation, water" if Mode.open_vocabulary in s.modes else "the largest tree")
     for s in BUILTIN_SPECS],
)
def test_segment_runs_each_model_from_its_published_layouts(
    model: str, query: str, empty_hub_cache: Path, raster: Path, tmp_path: Path,
    sam21_small: Path, small_clips: None, capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rs_reasoner.segmenters.open_vocab import training_free

    # A random CLIP puts most pixels in the background (its many names outvote two
    # classes by chance); without background names every pixel is one of the classes.
    monkeypatch.setattr(training_free, "select_background", lambda *_a, **_k: ())
    for weights in registry.get_spec(model).weights:
        write_published(empty_hub_cache, weights.repo_id, sam21_small)
    out = tmp_path / "out.gpkg"
    args = ["segment", str(raster), "--query", query, "--model", model, "--out", str(out),
            "--device", "cpu", "--quiet", "--verbose"]
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert f"({model}, " in printed
    polygons = gpd.read_file(out)
    if registry.get_spec(model).whole_extent:
        # The prompter really answered; random weights write nothing the parser accepts,
        # so there is nothing to draw, and that is no error.
        assert "log: raw answer: " in printed and "log: parsed answer: " in printed
        assert len(polygons) == 0
    else:
        assert len(polygons) > 0
        assert set(polygons["label"]) <= {"vegetation", "water"}


# -- each layout loads as published -----------------------------------------------------------


def _same(loaded: torch.nn.Module, reference: torch.nn.Module) -> int:
    """Number of float tensors ``loaded`` shares with ``reference`` by name, asserting each
    is equal (a loader that quantises or trims layers keeps the rest)."""
    ref = reference.state_dict()
    shared = 0
    for name, value in loaded.state_dict().items():
        if name in ref and value.is_floating_point():
            assert torch.equal(value, ref[name]), name
            shared += 1
    return shared


def test_openai_clip_loads_open_clips_file_of_the_timm_repo(
    empty_hub_cache: Path, small_clips: None
) -> None:
    from open_clip.transformer import QuickGELU

    from rs_reasoner.segmenters.open_vocab.training_free import ClipOpenVocabSegmenter

    reference = tiny_open_clip("ViT-B-16", quick_gelu=True, seed=3)
    folder = write_openai_clip_hub(
        snapshot_dir(empty_hub_cache, "timm/vit_base_patch16_clip_224.openai"), reference
    )
    seg = ClipOpenVocabSegmenter.from_pretrained()
    assert seg.model_id.endswith("/open_clip_model.safetensors")
    assert _same(seg.model, reference) >= 40
    assert isinstance(seg.model.visual.transformer.resblocks[0].mlp.gelu, QuickGELU)
    seg.close()
    # A cache that open_clip filled before it wrote safetensors holds only the .bin.
    (folder / "open_clip_model.safetensors").unlink()
    seg = ClipOpenVocabSegmenter.from_pretrained()
    assert seg.model_id.endswith("/open_clip_pytorch_model.bin")
    assert _same(seg.model, reference) >= 40


def test_remoteclip_loads_its_plain_state_dict_with_quick_gelu(
    empty_hub_cache: Path, small_clips: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from open_clip.transformer import QuickGELU

    from rs_reasoner.segmenters.hub_weights import REMOTECLIP_VIT_L14_WEIGHTS
    from rs_reasoner.segmenters.open_vocab.training_free import remoteclip_segmenter

    reference = tiny_open_clip("ViT-L-14", quick_gelu=True, seed=4)
    folder = write_remoteclip(snapshot_dir(empty_hub_cache, "chendelong/RemoteCLIP"), reference)
    seg = remoteclip_segmenter()
    assert _same(seg.model, reference) >= 40
    assert isinstance(seg.model.visual.transformer.resblocks[0].mlp.gelu, QuickGELU)
    seg.close()
    # A clone of the Hub repository named by the override works as the cache does.
    clone = shutil.copytree(folder, tmp_path / "RemoteCLIP")
    shutil.rmtree(empty_hub_cache / "models--chendelong--RemoteCLIP")
    monkeypatch.setenv(REMOTECLIP_VIT_L14_WEIGHTS.env_var, str(clone))
    assert _same(remoteclip_segmenter().model, reference) >= 40


def test_sam21_loads_metas_checkpoint_from_the_cache_and_from_a_clone(
    empty_hub_cache: Path, sam21_small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rs_reasoner.segmenters.reasoning.sam import SamRefiner

    reference = torch.load(sam21_small, map_location="cpu", weights_only=True)["model"]
    folder = write_sam21(snapshot_dir(empty_hub_cache, "facebook/sam2.1-hiera-small"),
                         sam21_small)

    def assert_loads() -> None:
        loaded = SamRefiner.load("small").predictor.model.state_dict()
        assert loaded.keys() == reference.keys()
        assert all(torch.equal(loaded[k], v) for k, v in reference.items())

    assert_loads()
    clone = shutil.copytree(folder, tmp_path / "sam2.1-hiera-small", copy_function=os.link)
    shutil.rmtree(empty_hub_cache / "models--facebook--sam2.1-hiera-small")
    monkeypatch.setenv(sam_weights("small").env_var, str(clone))
    assert_loads()


def test_rs_zeroseg_backbones_load_from_their_published_snapshots(
    empty_hub_cache: Path, small_clips: None, capsys: pytest.CaptureFixture
) -> None:
    from rs_reasoner.segmenters.open_vocab.rs_zeroseg.config import RSZeroSegConfig
    from rs_reasoner.segmenters.open_vocab.rs_zeroseg.model import build_clip, build_rs_stream

    # `models pull rs-zeroseg` fetches training's backbones; verify takes the same name
    # (it answered "Unknown model").
    assert main(["models", "verify", "rs-zeroseg"]) == 1
    assert "rs-zeroseg:" in capsys.readouterr().err
    reference = tiny_dinov2(seed=5)
    write_dinov2(snapshot_dir(empty_hub_cache, "facebook/dinov2-small"), reference)
    loaded = build_rs_stream(RSZeroSegConfig(), pretrained=True)
    # Every tensor, the attention ones included (published as attention.attention.query...).
    assert loaded.state_dict().keys() == reference.state_dict().keys()
    assert _same(loaded, reference) == len(reference.state_dict())

    # The CLIP stream reads the timm repository's open_clip file (at 224 px, the published
    # input, so the position embeddings are the file's own).
    clip = tiny_open_clip("ViT-B-16", quick_gelu=True, seed=6)
    write_openai_clip_hub(
        snapshot_dir(empty_hub_cache, "timm/vit_base_patch16_clip_224.openai"), clip
    )
    model, _ = build_clip(RSZeroSegConfig(image_size=224), pretrained=True)
    assert _same(model, clip) == len(clip.state_dict())
    assert main(["models", "verify", "rs-zeroseg"]) == 0
    assert capsys.readouterr().out.strip() == "rs-zeroseg: ok"


# -- weights that are there but do not load ---------------------------------------------------


def test_a_cut_short_checkpoint_is_a_clear_error_naming_it(
    empty_hub_cache: Path, raster: Path, tmp_path: Path, small_clips: None,
    capsys: pytest.CaptureFixture,
) -> None:
    folder = write_remoteclip(snapshot_dir(empty_hub_cache, "chendelong/RemoteCLIP"),
                              tiny_open_clip("ViT-L-14", quick_gelu=True))
    checkpoint = folder / "RemoteCLIP-ViT-L-14.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:5000])  # an interrupted copy
    assert main(["models", "list"]) == 0 and "weights present" in capsys.readouterr().out

    assert main(["models", "verify", "remoteclip-openvocab"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert str(checkpoint) in err and "cannot be loaded" in err
    assert f"delete {empty_hub_cache / 'models--chendelong--RemoteCLIP'}" in err
    assert "rs-reasoner models pull remoteclip-openvocab" in err

    out = tmp_path / "out.gpkg"
    args = ["segment", str(raster), "--query", "vegetation, water", "--model",
            "remoteclip-openvocab", "--out", str(out), "--device", "cpu", "--quiet"]
    assert main(args) == 2
    assert str(checkpoint) in capsys.readouterr().err and not out.exists()


def test_another_models_weights_in_an_override_folder_are_a_clear_error(
    empty_hub_cache: Path, tmp_path: Path, small_clips: None,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
) -> None:
    from rs_reasoner.segmenters.hub_weights import REMOTECLIP_VIT_L14_WEIGHTS

    # RemoteCLIP's ViT-L/14 name over a ViT-B/16 state dict (the repo's other checkpoints
    # are other architectures): it unpickles, and does not fit.
    clone = write_remoteclip(tmp_path / "RemoteCLIP", tiny_open_clip("ViT-B-16", True))
    monkeypatch.setenv(REMOTECLIP_VIT_L14_WEIGHTS.env_var, str(clone))
    assert main(["models", "verify", "remoteclip-openvocab"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "RuntimeError" in err
    assert str(clone / "RemoteCLIP-ViT-L-14.pt") in err
    env_var = REMOTECLIP_VIT_L14_WEIGHTS.env_var
    assert f"point {env_var} at the files of chendelong/RemoteCLIP as published" in err
