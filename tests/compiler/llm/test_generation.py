"""Generation bundles from the shipped trained small Llama + its LoRA adapter, run for real.

One int4 build per target with ``--lora`` (module-scoped); each bundle generates in edgec's own
runner and, unchanged, in the runtime's own GenAI library (openvino_genai / onnxruntime_genai).
Both run the same kernels on the same model, so greedy tokens are compared for equality.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, run_cli

pytest.importorskip("transformers")
pytest.importorskip("peft")

MODEL = ROOT / "examples" / "py_llama"
LORA = MODEL / "lora_email"
PROMPT = "def get_param(self, param, failobj=None):"
NEW = 24


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("llm")
    out = {}
    for target in ("intel-cpu", "onnxruntime"):
        out[target] = d / target
        r = run_cli("build", MODEL, "--target", target, "--precision", "int4", "--lora", LORA, "--group-size", "32",
                    "--calib", MODEL / "calib.txt", "--eval", MODEL / "heldout.txt", "-o", out[target], "--json")
        assert r.code == 0, r.err[-2000:]
    return out


def _edgec_tokens(bundle: Path) -> tuple[list[int], list[int], str]:
    r = run_cli("generate", bundle, "--prompt", PROMPT, "--max-new-tokens", NEW, "--json")
    assert r.code == 0, r.err
    res = r.json()
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(bundle / "tokenizer.json")).encode(PROMPT, add_special_tokens=False).ids
    return ids, res["tokens"], res["text"]


@pytest.mark.parametrize("target", ["intel-cpu", "onnxruntime"])
def test_manifest_records_methods_state_lora_and_accuracy(bundles, target):
    m = json.loads((bundles[target] / "manifest.json").read_text())
    r = json.loads((bundles[target] / "report.json").read_text())
    assert set(m["methods"]) == {"prefill", "decode"}
    assert len(m["state"]) == 2 * 4 and m["state"][0]["shape"][1:] == [2, "past_sequence_length", 32]
    assert m["generation"]["tokenizer"] == "tokenizer.json" and m["generation"]["eos_token_id"] == [0]
    assert m["lora"]["r"] == 8 and m["lora"]["merge_max_abs_err"] < 1e-3
    assert [p["name"] for p in m["passes"]][:1] == ["lora.merge"]
    acc = r["accuracy"]
    # Trained: perplexity far below the 512-token vocabulary; int4 (group 32) costs under 3 %.
    assert acc["reference_perplexity"] < 40
    assert acc["perplexity"] < acc["reference_perplexity"] * 1.03
    assert acc["logit_cosine"] > 0.99
    assert r["export_parity_max_abs_err"] < 1e-3
    if target == "intel-cpu":  # weights stay u4/i8 in the IR; attention is OpenVINO's SDPA op
        assert r["target"]["compressed_weights"] == {"matmul": 29, "gather": 1, "float": 0}
        assert r["target"]["ir_ops"]["ScaledDotProductAttention"] == 4
    else:  # onnxruntime's fused kernels, as onnxruntime-genai's builder emits
        assert r["target"]["fused"]["group_query_attention"] == 4 and r["target"]["fused"]["qkv_fused"] == 4


def test_openvino_bundle_runs_in_openvino_genai(bundles):
    ovg = pytest.importorskip("openvino_genai")
    import openvino as ov

    ids, tokens, text = _edgec_tokens(bundles["intel-cpu"])
    pipe = ovg.LLMPipeline(str(bundles["intel-cpu"]), "CPU")
    res = pipe.generate(ov.Tensor(np.array([ids], np.int64)), max_new_tokens=NEW, do_sample=False)
    assert list(res.tokens[0])[:NEW] == tokens
    assert pipe.generate(PROMPT, max_new_tokens=NEW, do_sample=False) == text  # its own OpenVINO tokenizers
    assert text.strip()


def test_cpu_plugin_fuses_attention_with_the_kv_cache(bundles):
    """The CPU plugin's stateful-SDPA fusion matches the IR: each layer's attention runs as one
    SDPA node that also appends to the cache (no Softmax/MatMul decomposition, no KV Concat)."""
    import collections

    import openvino as ov

    compiled = ov.Core().compile_model(str(bundles["intel-cpu"] / "openvino_model.xml"), "CPU")
    layers = collections.Counter(op.get_rt_info()["layerType"].astype(str)
                                 for op in compiled.get_runtime_model().get_ops())
    assert layers["ScaledDotProductAttention"] == 4
    assert layers["Softmax"] == 0 and layers["MatMul"] == 0
    assert layers["Concatenation"] <= 1  # the mask's shape; every past/current K/V concat is fused


@pytest.mark.parametrize("target", ["intel-cpu", "onnxruntime"])
def test_last_only_prefill_equals_the_full_prefills_last_row(bundles, target):
    from edgec.runtimes.generation import open_session

    session = open_session(bundles[target])
    ids = list(range(1, 20))
    full = session.prefill(ids)
    session.reset()
    last = session.prefill(ids, last_only=True)
    assert full.shape[0] == len(ids) and last.shape == (1, full.shape[1])
    np.testing.assert_allclose(last[0], full[-1], rtol=1e-5, atol=1e-5)
    assert session.decode(int(np.argmax(last[0]))).shape == (full.shape[1],)


def test_onnxruntime_bundle_runs_in_onnxruntime_genai(bundles):
    og = pytest.importorskip("onnxruntime_genai")
    ids, tokens, _ = _edgec_tokens(bundles["onnxruntime"])
    model = og.Model(str(bundles["onnxruntime"]))
    assert list(og.Tokenizer(model).encode(PROMPT)) == ids
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + NEW, do_sample=False)
    gen = og.Generator(model, params)
    gen.append_tokens(np.array([ids], np.int32))
    got = []
    while not gen.is_done():
        gen.generate_next_token()
        got.append(int(gen.get_next_tokens()[0]))
    stop = next((i + 1 for i, t in enumerate(tokens) if t == 0), len(tokens))  # both stop at end-of-text
    assert got[:stop] == tokens[:stop]


def test_bench_reports_generation_section(bundles):
    from edgec.runtimes.harness import validate_bench_result

    r = run_cli("bench", bundles["onnxruntime"], "--prompt-tokens", "16", "--new-tokens", "8", "--repeat", "1",
                "--threads", "1", "--json")
    assert r.code == 0, r.err
    b = r.json()
    validate_bench_result(b)
    g = b["generation"]
    assert g["prompt_tokens"] == 16 and g["new_tokens"] == 8
    assert g["ttft_ms"]["p50"] > 0 and g["tpot_ms"]["p90"] >= g["tpot_ms"]["p50"] > 0 and g["tokens_per_s"] > 0
    assert g["kv_cache_bytes"] == 2 * 4 * 2 * 32 * 4 * (16 + 8 - 1)  # k+v, layers, kv heads, head dim, fp32


def test_lora_merge_matches_unmerged_peft_and_changes_the_model():
    import torch
    from transformers import AutoModelForCausalLM

    from edgec.compiler.llm.source import merge_lora

    base = AutoModelForCausalLM.from_pretrained(str(MODEL), dtype=torch.float32).eval()
    ids = torch.arange(1, 33)[None]
    with torch.no_grad():
        before = base(input_ids=ids).logits
        merged, record = merge_lora(base, LORA)
        after = merged(input_ids=ids).logits
    assert record["merge_max_abs_err"] < 1e-3
    assert float((after - before).abs().max()) > 0.05  # the adapter did something


def test_bad_llm_inputs_give_one_error_line(tmp_path):
    r = run_cli("build", MODEL, "--target", "onnxruntime", "--precision", "int4", "--lora", tmp_path, "-o",
                tmp_path / "b")
    assert r.code != 0 and "error:" in r.err and "adapter_config.json" in r.err and "Traceback" not in r.err
    assert not (tmp_path / "b").exists()
    r = run_cli("build", MODEL, "--target", "arm", "--precision", "int8", "--calib", "random", "-o", tmp_path / "c")
    assert r.code != 0 and "error:" in r.err
    r = run_cli("generate", tmp_path, "--prompt", "x")
    assert r.code != 0 and "error:" in r.err
    r = run_cli("build", MODEL, "--target", "onnxruntime", "--kv-cache", "int8", "-o", tmp_path / "d")
    assert r.code != 0 and "--kv-cache int8" in r.err and not (tmp_path / "d").exists()


def test_chat_template_wraps_the_prompt():
    from edgec.runtimes.generation import BundleTokenizer

    template = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
                "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    manifest = {"generation": {"tokenizer": "tokenizer.json", "eos_token_id": [0], "chat_template": template}}
    tok = BundleTokenizer(MODEL, manifest)
    assert tok.render_chat("hi") == "<|user|>hi\n<|assistant|>"
    assert tok.decode(tok.encode("hi")) == "<|user|>hi\n<|assistant|>"
    assert tok.decode(tok.encode("hi", chat=False)) == "hi"


def test_perplexity_gate_moves_int4_layers_to_int8(tmp_path):
    out = tmp_path / "gated"
    r = run_cli("build", MODEL, "--target", "onnxruntime", "--precision", "int4", "--group-size", "128",
                "--int4-mode", "sym", "--calib", MODEL / "heldout.txt", "--max-accuracy-drop", "0.01",
                "--metric", "perplexity", "-o", out, "--json")
    assert r.code == 0, r.err[-2000:]
    gate = r.json()["report"]["accuracy_gate"]
    tries = gate["attempts"]
    assert tries[0]["int8_layers"] == 0 and tries[0]["drop_percent"] > 0.01
    assert len(tries) > 1 and tries[-1]["drop_percent"] < tries[0]["drop_percent"]
    assert gate["met"] == (tries[-1]["drop_percent"] <= 0.01)
    assert len(gate["int8_layers"]) == tries[-1]["int8_layers"]


def test_verify_on_text_compares_with_the_float_decoder(bundles):
    r = run_cli("verify", bundles["intel-cpu"], "--data", MODEL / "heldout.txt", "--json")
    assert r.code == 0, r.err
    v = r.json()
    assert v["runner"] == "openvino" and v["logit_cosine"] > 0.99
    assert v["perplexity"] < v["reference_perplexity"] * 1.03 < 40
    assert v["passed"] and not v["failures"]
    r = run_cli("verify", bundles["intel-cpu"], "--data", MODEL / "heldout.txt", "--min-cosine", "1.0")
    assert r.code != 0 and "logit cosine" in r.err
