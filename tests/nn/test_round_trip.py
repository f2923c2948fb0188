"""Prune / grow -> save_pretrained -> plain transformers in a fresh process: the same logits.

transformers 5 has one head count per config, so uneven layers are saved padded with inert
heads (see :mod:`selfimprove.nn.transformer.pretrained`); selfimprove's own loader removes the
padding again. GPT-2 hub layouts (``gpt2``, ``distilgpt2``) are imitated with tiny random
weights and a byte-level BPE tokenizer trained here: nothing is downloaded.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from selfimprove.errors import ConfigError, NotFoundError
from selfimprove.nn.transformer import (
    PADDING_KEY,
    count_parameters,
    grow_heads,
    heads_per_layer,
    load_pretrained,
    load_pretrained_tokenizer,
    prune_heads,
    quiet,
    save_pretrained,
)
from tests.nn._tiny_transformers import logits, tiny_gpt2, tiny_llama, token_ids

BOTH = ("gpt2", "llama")

# Runs in a fresh interpreter with plain transformers: selfimprove is never imported there.
PLAIN_LOADER = """
import json, sys
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

folders, ids = json.loads(sys.argv[1]), load_file(sys.argv[2])["ids"]
report = {}
for name, folder in folders.items():
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    with torch.no_grad():
        out = model(input_ids=ids).logits
    save_file({"logits": out.contiguous()}, folder + "/plain_logits.safetensors")
    report[name] = {
        "class": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
report["selfimprove_imported"] = any(m.split(".")[0] == "selfimprove" for m in sys.modules)
print(json.dumps(report))
"""


def _models() -> dict[str, Any]:
    gpt2 = tiny_gpt2()  # 4 layers x 4 heads
    llama = tiny_llama()  # 4 layers x 2 groups of 2 query heads
    return {
        "gpt2_pruned": prune_heads(gpt2, {0: [1], 2: [0, 3], 3: [2]}),
        "gpt2_pruned_grown": grow_heads(prune_heads(gpt2, {0: [1, 2], 1: [3]}), {0: 1}, seed=0)[0],
        "llama_uneven": prune_heads(llama, {0: [1], 3: [0]}),
        "llama_even": prune_heads(llama, {0: [0], 1: [1], 2: [1], 3: [0]}),
        "llama_grown": grow_heads(prune_heads(llama, {2: [0]}), {1: 1}, seed=0)[0],
    }


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every model saved, loaded back by plain transformers in ONE fresh process."""
    root = tmp_path_factory.mktemp("round_trip")
    models = _models()
    folders = {name: str(save_pretrained(m, root / name)) for name, m in models.items()}
    ids = token_ids(2, 24, seed=11)
    save_file({"ids": ids}, str(root / "ids.safetensors"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", PLAIN_LOADER, json.dumps(folders), str(root / "ids.safetensors")],
        cwd=root,  # not the repository: the child could not even find selfimprove's sources
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    plain = {n: load_file(f + "/plain_logits.safetensors")["logits"] for n, f in folders.items()}
    return {"models": models, "folders": folders, "ids": ids, "report": report, "plain": plain}


def _config(folder: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((Path(folder) / "config.json").read_text())
    return data


@pytest.mark.parametrize("name", ["gpt2_pruned", "gpt2_pruned_grown"])
def test_pruned_gpt2_loads_in_plain_transformers_with_equal_logits(
    saved: dict[str, Any], name: str
) -> None:
    model, report = saved["models"][name], saved["report"]
    assert report["selfimprove_imported"] is False
    assert report[name]["class"] == "GPT2LMHeadModel"
    delta = (saved["plain"][name] - logits(model, saved["ids"])).abs().max()
    assert float(delta) <= 1e-5
    config = _config(saved["folders"][name])
    assert config[PADDING_KEY] == heads_per_layer(model)
    # GPT2Config ties heads to width: plain transformers gets all n_head heads back (padding).
    assert config["n_head"] == 4
    assert report[name]["parameters"] == count_parameters(tiny_gpt2())
    assert report[name]["parameters"] > count_parameters(model)


@pytest.mark.parametrize(
    ("name", "heads", "groups"),
    [
        ("llama_uneven", [1, 2, 2, 1], 2),  # padded to the largest layer
        ("llama_even", [1, 1, 1, 1], 1),  # saved exactly: a smaller Llama
        ("llama_grown", [2, 3, 1, 2], 4),  # 3 groups = 6 heads do not divide 64: padded to 4
    ],
)
def test_pruned_llama_loads_in_plain_transformers_with_equal_logits(
    saved: dict[str, Any], name: str, heads: list[int], groups: int
) -> None:
    model, report = saved["models"][name], saved["report"]
    assert heads_per_layer(model) == heads
    assert report["selfimprove_imported"] is False
    assert report[name]["class"] == "LlamaForCausalLM"
    delta = (saved["plain"][name] - logits(model, saved["ids"])).abs().max()
    assert float(delta) <= 1e-5
    config = _config(saved["folders"][name])
    assert config["num_key_value_heads"] == groups and config["num_attention_heads"] == 2 * groups
    assert config["head_dim"] == 16 and config[PADDING_KEY] == heads
    if name == "llama_even":
        assert report[name]["parameters"] == count_parameters(model)


@pytest.mark.parametrize(
    "name", ["gpt2_pruned", "gpt2_pruned_grown", "llama_uneven", "llama_even", "llama_grown"]
)
def test_load_pretrained_takes_the_padding_away_again(saved: dict[str, Any], name: str) -> None:
    model = saved["models"][name]
    again = load_pretrained(saved["folders"][name], families=BOTH)
    assert heads_per_layer(again) == heads_per_layer(model)
    assert count_parameters(again) == count_parameters(model)
    assert not hasattr(again.config, PADDING_KEY)
    torch.testing.assert_close(
        logits(again, saved["ids"]), logits(model, saved["ids"]), rtol=0, atol=1e-5
    )


def test_load_pretrained_takes_gpt2_alone_unless_told(saved: dict[str, Any]) -> None:
    with pytest.raises(NotFoundError, match="holds a 'llama' model, not gpt2"):
        load_pretrained(saved["folders"]["llama_even"])
    assert heads_per_layer(load_pretrained(saved["folders"]["gpt2_pruned"])) == [3, 4, 2, 3]


def test_padding_trained_by_other_code_is_kept(
    saved: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from transformers import AutoModelForCausalLM

    with quiet():
        plain = AutoModelForCausalLM.from_pretrained(saved["folders"]["gpt2_pruned"])
    with torch.no_grad():  # layer 2 holds heads 0, 1 and padding heads 2, 3 (rows 32..63)
        plain.transformer.h[2].attn.c_proj.weight[40].fill_(0.5)
    with quiet():
        plain.save_pretrained(tmp_path / "trained")
    with caplog.at_level(logging.WARNING, logger="selfimprove.nn.transformer.pretrained"):
        again = load_pretrained(str(tmp_path / "trained"))
    assert heads_per_layer(again) == [3, 4, 4, 3]  # layer 2's padding is no longer inert
    assert "layer 2" in caplog.text
    torch.testing.assert_close(
        logits(again, saved["ids"]), logits(plain, saved["ids"]), rtol=0, atol=1e-5
    )


def test_a_gpt2_layer_wider_than_n_head_cannot_be_saved(tmp_path: Path) -> None:
    grown, _ = grow_heads(tiny_gpt2(), {1: 1}, seed=0)
    with pytest.raises(ConfigError, match=r"exactly 4 heads per layer; layers \{1: 5\}"):
        save_pretrained(grown, tmp_path / "wide")
    assert not (tmp_path / "wide").exists()


# -- GPT-2 hub layouts, offline ---------------------------------------------------------------


@pytest.fixture(scope="module")
def bpe_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``vocab.json`` and ``merges.txt`` of a byte-level BPE (GPT-2's kind), trained here."""
    from tokenizers import ByteLevelBPETokenizer

    folder = tmp_path_factory.mktemp("bpe")
    bpe = ByteLevelBPETokenizer()
    text = ["Hello world. The quick brown fox jumps over the lazy dog, again and again."] * 20
    bpe.train_from_iterator(
        text, vocab_size=300, min_frequency=1, special_tokens=["<|endoftext|>"], show_progress=False
    )
    bpe.save_model(str(folder))
    return folder


def _hub_folder(folder: Path, layout: str, bpe_files: Path) -> Any:
    """A folder shaped like the hub's ``gpt2`` / ``distilgpt2``: config.json with their extra
    keys, model.safetensors, vocab.json, merges.txt."""
    n_layer = 6 if layout == "distilgpt2" else 4
    model = tiny_gpt2(n_layer=n_layer, seed=3, vocab_size=300)
    folder.mkdir()
    config = model.config.to_dict()
    config.update(
        architectures=["GPT2LMHeadModel"],
        activation_function="gelu_new",
        n_ctx=64,
        task_specific_params={"text-generation": {"do_sample": True, "max_length": 50}},
    )
    (folder / "config.json").write_text(json.dumps(config))
    state = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    if layout == "gpt2":
        # gpt2's own file: base-model keys without the "transformer." prefix, no lm_head
        # (tied), and the causal-mask buffers older transformers stored as "h.N.attn.bias".
        state = {k.removeprefix("transformer."): v for k, v in state.items() if "lm_head" not in k}
        for i in range(n_layer):
            state[f"h.{i}.attn.bias"] = torch.ones(1, 1, 64, 64).tril()
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    for name in ("vocab.json", "merges.txt"):
        (folder / name).write_bytes((bpe_files / name).read_bytes())
    return model


@pytest.mark.parametrize("layout", ["gpt2", "distilgpt2"])
def test_gpt2_hub_layouts_load_offline_and_save_back_for_plain_transformers(
    tmp_path: Path, bpe_files: Path, layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = _hub_folder(tmp_path / layout, layout, bpe_files)
    model = load_pretrained(str(tmp_path / layout))
    tokenizer = load_pretrained_tokenizer(str(tmp_path / layout))
    ids = torch.tensor([tokenizer.encode("Hello world. The lazy dog jumps again.")])
    assert heads_per_layer(model) == [4] * (6 if layout == "distilgpt2" else 4)
    assert tokenizer.decode(ids[0]) == "Hello world. The lazy dog jumps again."
    torch.testing.assert_close(logits(model, ids), logits(source, ids), rtol=0, atol=0)

    pruned = prune_heads(model, {0: [0, 3], 1: [2]})
    out = save_pretrained(pruned, tmp_path / "pruned", tokenizer=tokenizer)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with quiet():
        plain = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
        plain_tokenizer = AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert plain_tokenizer.encode("Hello world. The lazy dog jumps again.") == ids[0].tolist()
    delta = (logits(plain, ids) - logits(pruned, ids)).abs().max()
    assert float(delta) <= 1e-5
