"""TR: the query translated to English (offline lexicon translator and any transformers model)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.cache import StageCache
from harness.cli import main
from harness.components import REGISTRY
from harness.components.tr import (
    OfflineTranslator,
    TransformersTranslator,
    Translator,
    TRConfig,
    make_translator,
    translate_queries,
)
from harness.config import parse_config
from harness.data.loader import load_directory
from harness.data.prepare import PreparedData
from harness.data.synth import generate, load_lexicon
from harness.errors import ConfigError, HarnessError
from harness.plan import resolve_trial
from harness.stages import Stages

ROOT = Path(__file__).resolve().parents[2]
QC, QI = OfflineTranslator("QC"), OfflineTranslator("QI")


# ------------------------------------------------------------------------ offline


@pytest.mark.parametrize(("language", "query", "qc", "qi"), [
    ("es", "camisa rojo de algodón", "shirts red cotton", "shirt red cotton"),
    ("es", "Camisa Rojo Talla M", "shirts red size M", "shirt red size M"),
    ("fr", "robe noir en soie taille s", "dresses black silk size s", "dress black silk size s"),
    ("de", "ROT HEMD GRÖSSE 42", "red shirts size 42", "red shirt size 42"),
    ("pt", "nordvik calça jeans preto", "nordvik jeans black", "nordvik jeans black"),
    ("ko", "빨간색 셔츠", "red shirts", "red shirt"),
    ("ar", "قميص أحمر", "shirts red", "shirt red"),
    ("vn", "áo thun trắng", "t-shirts white", "t-shirt white"),
    # scripts written without spaces: longest match over the lexicon forms, spaces put back
    ("ja", "赤Tシャツ", "red t-shirts", "red t-shirt"),
    ("ja", "黒ワイシャツサイズ L", "black shirts size L", "black shirt size L"),
    ("th", "เสื้อยืดสีแดง", "t-shirts red", "t-shirt red"),
    ("th", "เสื้อเชิ้ตสีขาวไซส์ xl", "shirts white size xl", "shirt white size xl"),
])
def test_offline_translates_lexicon_words(language, query, qc, qi):
    assert QC.translate_one(query, language) == qc
    assert QI.translate_one(query, language) == qi


def test_offline_keeps_unknown_words_symbols_and_english():
    assert QC.translate_one("zqx camisa qwerty!", "es") == "zqx shirts qwerty!"
    assert QC.translate_one("安い シャツ ★", "ja") == "安い shirts ★"
    assert QC.translate_one("camisaa", "es") == "camisaa"          # a typo is not a lexicon word
    assert QC.translate_one("Lumea  ???", "es") == "Lumea  ???"     # nothing matched: as written
    assert QC.translate_one("camisa rojo", "en") == "camisa rojo"   # English rows are not touched
    # words of another language are not translated (the row's language decides)
    assert QC.translate_one("hemd", "es") == "hemd"
    # inside longer words nothing is replaced in spaced scripts
    assert QC.translate_one("camisetas", "es") == "camisetas"
    # a language the lexicon lacks gets every language's forms
    assert QC.translate_one("hemd rojo", "xx") == "shirts red"


def test_every_lexicon_word_translates_in_every_language():
    lexicon = load_lexicon()
    colour_forms = {w for words in lexicon.words["colour"].values()
                    for lang, ws in words.items() for w in ws}
    for language in lexicon.languages:
        if language == "en":
            continue
        for leaf in lexicon.leaves:
            for word in leaf.words[language]:
                assert QC.translate_one(word, language) == leaf.name, (language, word)
                assert QI.translate_one(word.upper(), language) == leaf.title.lower()
        for kind in ("colour", "material"):
            for key, words in lexicon.words[kind].items():
                for word in words[language]:
                    if kind == "material" and word in colour_forms:
                        continue  # vn "vàng": yellow and gold, the colour wins
                    assert QC.translate_one(word, language) == key, (language, word)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    generate(out, seed=0, scale="tiny")
    return out


def read_jsonl(path):
    return pd.DataFrame([json.loads(line) for line in Path(path).read_text("utf-8").splitlines()])


def test_offline_hit_rate_on_the_builtin_benchmark(synth_dir):
    """Clean positive QC rows whose query names the product in its own language: the
    translated query names the category's leaf in English (typos are the misses)."""
    rows = read_jsonl(synth_dir / "train_QC.txt").merge(
        read_jsonl(synth_dir / "truth_QC.txt")[["id", "kind", "clean_label"]], on="id")
    rows = rows[(rows["kind"] == "translation") & (rows["clean_label"] == 1)]
    translated = QC.translate(rows["origin_query"].tolist(), rows["language"].tolist())
    leaves = rows["category_path"].str.split(",").str[-1]
    hits = [leaf in text for leaf, text in zip(leaves, translated, strict=True)]
    assert len(rows) > 100 and sum(hits) / len(hits) >= 0.9
    assert set(rows["language"]) == {"es", "fr", "ja", "ko", "pt"}


def test_translate_queries_skips_english_and_dedupes():
    class Spy:
        name, version = "spy", "1"

        def __init__(self):
            self.seen = []

        def translate(self, texts, languages):
            self.seen += list(zip(texts, languages, strict=True))
            return [t.upper() for t in texts]

    spy = Spy()
    assert isinstance(spy, Translator)
    out = translate_queries(["a", "b", "a", "a", "c"], ["es", "en", "es", "fr", "en"], translator=spy)
    assert out == ["A", "b", "A", "A", "c"]
    assert spy.seen == [("a", "es"), ("a", "fr")]


# ------------------------------------------------------------------------- config


def test_config_validation():
    assert TRConfig().translator == "offline" and TRConfig().batch_size == 16
    with pytest.raises(ConfigError, match="components.TR.model is required when translator is "
                                          "'transformers'"):
        parse_config({"components": {"TR": {"translator": "transformers"}}})
    for key in ("batch_size", "max_new_tokens"):
        with pytest.raises(ConfigError, match=f"components.TR.{key}"):
            parse_config({"components": {"TR": {key: 0}}})
    with pytest.raises(ConfigError, match="components.TR.translator"):
        parse_config({"components": {"TR": {"translator": "google"}}})
    assert isinstance(make_translator(TRConfig()), OfflineTranslator)
    model = make_translator(TRConfig(translator="transformers", model="x/y", batch_size=3,
                                     max_new_tokens=7), device="cpu", dtype="float32")
    assert isinstance(model, TransformersTranslator) and model._model is None  # not loaded yet
    assert (model.batch_size, model.max_new_tokens, model.device) == (3, 7, "cpu")


# ------------------------------------------------------------------ stage path


def stages_for(root, cache, **components):
    config = parse_config({"data": {"source": "dir", "dir": str(root)},
                           "model": {"device": "cpu"}, "components": components})
    data = PreparedData(root, "dir", {}, load_directory(root, tasks=["QC", "QI"]))
    return Stages(config=config, cache=StageCache(cache), data=data), data


def text_for(stages, data, task, components):
    spec = resolve_trial(stages.config, task=task, components=components, seed=0, model="tiny",
                         fingerprints={"QC": "qc", "QI": "qi"})
    rows = stages.evaluation_sets(data.tasks[task]).train
    return rows, stages.text_columns(rows, spec), spec


@pytest.mark.parametrize("task", ["QC", "QI"])
def test_tr_through_the_stages(synth_dir, tmp_path, task):
    stages, data = stages_for(synth_dir, tmp_path / "c")
    rows, off, _ = text_for(stages, data, task, ())
    _, on, _ = text_for(stages, data, task, ("TR",))
    english = rows["language"] == "en"
    assert (on["query_text"][english] == rows["origin_query"][english]).all()
    changed = on["query_text"][~english] != rows["origin_query"][~english]
    assert changed.mean() > 0.6
    assert on["target_text"].equals(off["target_text"])
    expected = (QC if task == "QC" else QI).translate(rows["origin_query"].tolist(),
                                                      rows["language"].tolist())
    assert on["query_text"].tolist() == expected


def test_cache_key_follows_translator_and_model_not_batch_size(synth_dir, tmp_path):
    component = REGISTRY["TR"]

    def keys(**settings):
        stages, data = stages_for(synth_dir, tmp_path / "k", TR=settings)
        spec = resolve_trial(stages.config, task="QC", components=("TR",), seed=0, model="tiny",
                             fingerprints={"QC": "qc", "QI": "qi"})
        context = stages.context(spec)
        params = component.key_settings(context.settings("TR"), context)
        return StageCache.key("TR", version=component.version, params=params, inputs=[]), spec.key

    offline = keys()
    assert keys(batch_size=2) == offline
    model_a = keys(translator="transformers", model="org/model-a")
    assert model_a[0] != offline[0] and model_a[1] != offline[1]
    assert keys(translator="transformers", model="org/model-b") != model_a
    assert keys(translator="transformers", model="org/model-a", batch_size=1) == model_a
    assert keys(translator="transformers", model="org/model-a", max_new_tokens=8) != model_a
    # no model is loaded to compute a key
    assert all(getattr(t, "_model", None) is None for t in component._translators.values())

    # through the stage cache: a new batch size reuses the cached translation
    stages, data = stages_for(synth_dir, tmp_path / "s")
    text_for(stages, data, "QC", ("TR",))
    stages2, _ = stages_for(synth_dir, tmp_path / "s", TR={"batch_size": 3})
    text_for(stages2, data, "QC", ("TR",))
    assert stages.cache.counts()["TR"]["misses"] == 1
    assert stages2.cache.counts()["TR"] == {"hits": 1, "misses": 0}


def test_tr_then_lt_tags_the_original_language(synth_dir, tmp_path):
    stages, data = stages_for(synth_dir, tmp_path / "c")
    rows, both, _ = text_for(stages, data, "QI", ("TR", "LT"))
    _, tr_only, _ = text_for(stages, data, "QI", ("TR",))
    expected = "[LANG=" + rows["language"] + "] " + tr_only["query_text"]
    assert both["query_text"].tolist() == expected.tolist()
    assert REGISTRY.label(("LT", "TR")) == "TR+LT"


# ------------------------------------------------------------------ transformers


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A random causal LM (Qwen2) and a random seq2seq model (T5) with a BPE tokenizer trained
    here; nothing is downloaded."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2Config,
        Qwen2ForCausalLM,
        T5Config,
        T5ForConditionalGeneration,
    )

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator([
        "Translate this e-commerce search query to English. Reply with the English translation",
        "camisa roja de algodón talla M. robe noire. 赤いTシャツ. red cotton shirt",
    ] * 3, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>",
                                        eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(0)
    causal = tmp_path_factory.mktemp("tiny_causal")
    tokenizer.save_pretrained(causal)
    Qwen2ForCausalLM(Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, intermediate_size=64, max_position_embeddings=512,
        initializer_range=0.5, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id)).save_pretrained(causal)
    seq2seq = tmp_path_factory.mktemp("tiny_t5")
    tokenizer.save_pretrained(seq2seq)
    T5ForConditionalGeneration(T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=64, num_layers=1, num_heads=2,
        initializer_factor=5.0, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id)).save_pretrained(seq2seq)
    return {"causal": causal, "seq2seq": seq2seq}


QUERIES = ["camisa roja de algodón talla M", "robe noire", "赤いTシャツ", "x",
           "a much longer query that forces padding in the batch, camisa roja"]


@pytest.mark.parametrize("kind", ["causal", "seq2seq"])
def test_transformers_translator_batches(tiny_models, kind):
    one = TransformersTranslator(str(tiny_models[kind]), batch_size=1, max_new_tokens=6,
                                 device="cpu", dtype="float32")
    three = TransformersTranslator(str(tiny_models[kind]), batch_size=3, max_new_tokens=6,
                                   device="cpu", dtype="float32")
    raw = one.generate([one.prompt(q) for q in QUERIES])
    assert one.seq2seq is (kind == "seq2seq")
    assert len(raw) == len(QUERIES) and len(set(raw)) > 1     # real, input-dependent decoding
    assert three.generate([three.prompt(q) for q in QUERIES]) == raw  # padding changes nothing
    out = three.translate(QUERIES, ["es", "fr", "ja", "es", "es"])
    assert len(out) == len(QUERIES)
    assert all(isinstance(t, str) and t and "\n" not in t for t in out)
    if kind == "causal":
        assert one.prompt("hola").endswith("Query: hola\nEnglish:")
    else:
        assert one.prompt("hola") == "hola"


def test_transformers_translator_in_the_stages_loads_only_on_a_cache_miss(
        synth_dir, tiny_models, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_models["causal"], model)
    settings = {"translator": "transformers", "model": str(model), "batch_size": 8,
                "max_new_tokens": 3}
    stages, data = stages_for(synth_dir, tmp_path / "c", TR=settings)
    rows, out, _ = text_for(stages, data, "QC", ("TR",))
    english = rows["language"] == "en"
    assert (out["query_text"][english] == rows["origin_query"][english]).all()
    assert out["query_text"].str.len().gt(0).all()
    # cached: a fresh process (no translator in memory) and no model on disk still works
    shutil.rmtree(model)
    REGISTRY["TR"]._translators.clear()
    stages2, _ = stages_for(synth_dir, tmp_path / "c", TR=settings)
    _, again, _ = text_for(stages2, data, "QC", ("TR",))
    assert again["query_text"].tolist() == out["query_text"].tolist()
    assert stages2.cache.counts()["TR"] == {"hits": 1, "misses": 0}
    # not cached (another batch of rows): now the missing model is a one-line error
    stages3, _ = stages_for(synth_dir, tmp_path / "c", TR=settings)
    spec = resolve_trial(stages3.config, task="QI", components=("TR",), seed=0, model="tiny",
                         fingerprints={"QC": "qc", "QI": "qi"})
    with pytest.raises(HarnessError, match="components.TR.model: cannot load"):
        stages3.text_columns(stages3.evaluation_sets(data.tasks["QI"]).train, spec)
    REGISTRY["TR"]._translators.clear()


@pytest.mark.parametrize("model", ["no-such-org/no-such-model-xyz", "not a valid id!"])
def test_bad_model_is_a_one_line_error(model, tmp_path):
    translator = TransformersTranslator(model, device="cpu")
    with pytest.raises(HarnessError) as error:
        translator.translate(["hola"], ["es"])
    message = str(error.value)
    assert message.startswith(f"components.TR.model: cannot load {model!r}: ")
    assert "\n" not in message and len(message) > len(f"components.TR.model: cannot load {model!r}: ")


def test_empty_directory_is_a_one_line_error(tmp_path):
    with pytest.raises(HarnessError, match=r"^components\.TR\.model: cannot load '.*': [^\n]+$"):
        TransformersTranslator(str(tmp_path), device="cpu").translate(["hola"], ["es"])


# ---------------------------------------------------------------------------- CLI


def test_tag_tr_lt(synth_dir, tmp_path):
    out = tmp_path / "tagged.txt"
    source = synth_dir / "train_QI.txt"
    assert main(["tag", "--task", "QI", "--tr", "--lt", "--input", str(source),
                 "--output", str(out)]) == 0
    rows, original = read_jsonl(out), read_jsonl(source)
    assert len(rows) == len(original)
    expected = QI.translate(original["origin_query"].tolist(), original["language"].tolist())
    assert rows["tagged_query"].tolist() == [f"[LANG={lg}] {q}" for lg, q in
                                             zip(original["language"], expected, strict=True)]
    assert rows["tagged_item_title"].tolist() == original["item_title"].tolist()


def test_python_m_harness_tag_tr(synth_dir, tmp_path):
    out = tmp_path / "qc.txt"
    result = subprocess.run([sys.executable, "-m", "harness", "tag", "--task", "QC", "--tr",
                             "--input", str(synth_dir / "train_QC.txt"), "--output", str(out)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "(TR)" in result.stdout
    rows = read_jsonl(out)
    spanish = rows[rows["language"] == "es"]
    assert (spanish["tagged_query"] != spanish["origin_query"]).mean() > 0.6
    english = rows[rows["language"] == "en"]
    assert (english["tagged_query"] == english["origin_query"]).all()
