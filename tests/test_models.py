"Fixture models with the real TinyStories architectures, model loading, revisions and the errors a user can meet."
import json, shutil, subprocess, sys

import pytest
import torch

from support import offline_environment
from tinyscale.core import TinyscaleError
from tinyscale.models import (EOS_TOKEN_ID, TINYSTORIES_SHAPES, folder_revision, load_model, model_source, pick_device,
                              write_fixture_model)

@pytest.mark.slow
def test_fixture_command_writes_the_three_baselines(cli_process, tmp_path):
    "`tinyscale fixtures models DIR` writes 1M, 8M and 28M with the published parameter counts and the GPT-2 tokenizer."
    done = cli_process("fixtures", "models", tmp_path/"models", timeout=600)
    assert done.status == 0, done.err
    for size in ("1M", "8M", "28M"):
        folder = tmp_path/"models"/f"TinyStories-{size}"
        hidden, layers, params = TINYSTORIES_SHAPES[size]
        assert f"{params:,} parameters" in done.out
        loaded = load_model(folder, device="cpu")
        assert loaded.params == params
        assert loaded.tokenizer("Hello world").input_ids == [15496, 995]
        config = json.loads((folder/"config.json").read_text())
        assert (config["hidden_size"], config["num_layers"], config["num_heads"]) == (hidden, layers, 16)
        assert config["attention_layers"] == ["global", "local"] * (layers // 2)
        assert (config["window_size"], config["max_position_embeddings"], config["vocab_size"]) == (256, 2048, 50257)
    assert not [p for p in (tmp_path/"models").iterdir() if p.name.startswith(".")]  # no scratch folder left behind


def test_fixture_model_loads_for_left_padded_generation(fixture_models):
    loaded = load_model(fixture_models, device="cpu")
    assert loaded.params == TINYSTORIES_SHAPES["1M"][2]
    assert loaded.name == "TinyStories-1M"
    assert loaded.tokenizer("Hello world").input_ids == [15496, 995]
    assert (loaded.tokenizer.padding_side, loaded.tokenizer.pad_token_id) == ("left", EOS_TOKEN_ID)
    assert not loaded.model.training
    assert next(loaded.model.parameters()).dtype == torch.float32


def test_bfloat16_loads_with_a_warning(fixture_models):
    with pytest.warns(UserWarning, match="bfloat16 can change outputs"):
        loaded = load_model(fixture_models, device="cpu", dtype="bfloat16")
    assert next(loaded.model.parameters()).dtype == torch.bfloat16


def test_local_revision_is_a_content_hash(fixture_models, tmp_path):
    revision = model_source(fixture_models).revision
    assert revision.startswith("weights:") and revision == folder_revision(fixture_models)
    copy = shutil.copytree(fixture_models, tmp_path/"copy")
    assert folder_revision(copy) == revision  # the name of the folder does not matter, its content does
    config = json.loads((copy/"config.json").read_text())
    config["window_size"] = 128
    (copy/"config.json").write_text(json.dumps(config))
    assert folder_revision(copy) != revision


def test_existing_fixture_folder_is_kept(fixture_models):
    before = (fixture_models/"model.safetensors").stat().st_mtime_ns
    assert write_fixture_model(fixture_models, "1M", seed=1) == fixture_models
    assert (fixture_models/"model.safetensors").stat().st_mtime_ns == before


def test_fixed_seed_gives_the_same_weights(tmp_path):
    a, b = (write_fixture_model(tmp_path/name, "1M", seed=0) for name in ("a", "b"))
    assert folder_revision(a) == folder_revision(b)
    assert folder_revision(write_fixture_model(tmp_path/"c", "1M", seed=1)) != folder_revision(a)


def test_folders_that_are_not_models_are_refused(fixture_models, tmp_path):
    with pytest.raises(TinyscaleError, match="not a model folder .no config.json"): model_source(tmp_path)
    no_weights = tmp_path/"no-weights"
    no_weights.mkdir()
    shutil.copy(fixture_models/"config.json", no_weights)
    with pytest.raises(TinyscaleError, match="no weights"): model_source(no_weights)
    with pytest.raises(TinyscaleError, match="no such model folder"): model_source(tmp_path/"missing")
    broken = shutil.copytree(fixture_models, tmp_path/"broken")
    (broken/"model.safetensors").write_bytes(b"not weights")
    with pytest.raises(TinyscaleError, match="broken"): load_model(broken, device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_device_is_a_clear_error():
    with pytest.raises(TinyscaleError, match="no CUDA GPU"): pick_device("cuda")


@pytest.mark.parametrize("network", [
    {"HF_HUB_OFFLINE": "1"},                                          # offline mode
    {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"},     # online, but the Hub does not answer
])
def test_unreachable_hub_is_one_clear_line(cli_process, tmp_path, network):
    done = cli_process("fixtures", "models", "--help")  # the CLI itself works
    assert done.status == 0
    code = ("from tinyscale.models import load_model\n"
            "try: load_model('roneneldan/TinyStories-1M', device='cpu')\n"
            "except Exception as e: print(type(e).__name__, e)")
    done = subprocess.run([sys.executable, "-c", code], env=offline_environment(tmp_path, **network), capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.strip() == ("TinyscaleError cannot download roneneldan/TinyStories-1M: no network; "
                                   "pass a local folder with --model"), done.stdout + done.stderr


def test_fixture_command_refuses_an_unknown_size(cli_process, tmp_path):
    done = cli_process("fixtures", "models", tmp_path/"models", "--size", "2M")
    assert done.status == 1
    assert done.err.strip().splitlines() == ["tinyscale: error: size '2M': unknown TinyStories size (expected one of 1M, 3M, 8M, 28M, 33M)"]
    assert not (tmp_path/"models").exists()


def test_openmp_waits_passively_unless_told_otherwise(offline_env):
    "Importing tinyscale.models before torch makes idle OpenMP threads sleep instead of spinning (a user's choice wins)."
    code = "import os, tinyscale.models; print(os.environ['OMP_WAIT_POLICY'])"
    env = offline_env
    env.pop("OMP_WAIT_POLICY", None)
    for preset, expected in ((None, "PASSIVE"), ("ACTIVE", "ACTIVE")):
        if preset: env["OMP_WAIT_POLICY"] = preset
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert done.stdout.strip() == expected, done.stderr
