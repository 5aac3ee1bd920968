import numpy as np
import pandas as pd
import pytest

from harness.components.prompts import (
    TEMPLATE_VERSION,
    Example,
    build_prompts,
    load_text,
    prompt_texts,
    select_examples,
    similarity_tfidf,
    to_examples,
)
from harness.components.tagging import hierarchical_category_tag, language_tag
from harness.errors import ConfigError, HarnessError

HEAD = ("Below is an instruction that describes a task, paired with an input that provides "
        "further context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n")


def rows(task="QC"):
    return pd.DataFrame({"query_text": ["zapatos rojos"],
                         "target_text": ["fashion,shoes" if task == "QC" else "Nike Air"]})


def test_plain_prompt_exact():
    (prompt,) = build_prompts(rows(), task="QC")
    assert prompt == (HEAD + load_text("instruction_QC") + "\n"
                      "Answer with exactly one word: yes or no.\n\n"
                      "### Input:\nQuery: zapatos rojos\nCategory: fashion,shoes\n\n"
                      "### Response:\n")
    (qi,) = build_prompts(rows("QI"), task="QI")
    assert "### Input:\nQuery: zapatos rojos\nProduct: Nike Air\n\n### Response:\n" in qi
    assert qi.endswith("### Response:\n")
    assert TEMPLATE_VERSION


def test_cot_changes_the_instruction_only():
    (plain,) = build_prompts(rows(), task="QC", cot_version=None)
    (cot,) = build_prompts(rows(), task="QC", cot_version="v1")
    steps = load_text("cot_QC_v1")
    assert steps not in plain and steps in cot
    assert cot.replace(steps + "\n", "") == plain
    assert cot.index(steps) < cot.index("### Input:")
    assert cot.endswith("### Response:\n")
    (qi,) = build_prompts(rows("QI"), task="QI", cot_version="v1")
    assert load_text("cot_QI_v1") in qi and "4. Decide" in qi


def test_unknown_cot_version_is_a_config_error():
    with pytest.raises(ConfigError, match="components.CoT.version.*v9.*available: v1"):
        build_prompts(rows(), task="QC", cot_version="v9")


def test_prompt_texts_lists_every_file_used():
    assert list(prompt_texts("QC", cot_version=None)) == [
        "preamble.txt", "instruction_QC.txt", "answer_format.txt"]
    texts = prompt_texts("QI", cot_version="v1")
    assert list(texts) == ["preamble.txt", "instruction_QI.txt", "cot_QI_v1.txt",
                           "answer_format.txt"]
    assert texts["answer_format.txt"] == "Answer with exactly one word: yes or no."
    with pytest.raises(HarnessError):
        load_text("no_such_text")


def test_icl_adds_options_block_with_examples():
    examples = [[Example("red shoes", "fashion,shoes", 1), Example("rice", "fashion,bags", 0),
                 Example("farine", "food,flour", 1), Example("ノート", "sports", 0)]]
    (prompt,) = build_prompts(rows(), task="QC", examples=examples)
    block = ("### Options:\n"
             "Query: red shoes\nCategory: fashion,shoes\nAnswer: yes\n\n"
             "Query: rice\nCategory: fashion,bags\nAnswer: no\n\n"
             "Query: farine\nCategory: food,flour\nAnswer: yes\n\n"
             "Query: ノート\nCategory: sports\nAnswer: no\n\n"
             "### Input:\nQuery: zapatos rojos\n")
    assert block in prompt
    (plain,) = build_prompts(rows(), task="QC")
    assert "### Options:" not in plain
    assert prompt.replace(block, "### Input:\nQuery: zapatos rojos\n") == plain


def test_lt_and_hct_show_through_query_and_target_text():
    frame = pd.DataFrame({"origin_query": ["harina"], "language": ["es"],
                          "category_path": ["food,grocery,flour, baking and cooking"]})
    frame["query_text"] = language_tag(frame["origin_query"], frame["language"])
    frame["target_text"] = hierarchical_category_tag(frame["category_path"], mode="smart")
    (prompt,) = build_prompts(frame, task="QC")
    assert ("Query: [LANG=es] harina\nCategory: [D1] food [/D1] [D2] grocery [/D2] "
            "[D3] flour, baking and cooking [/D3]\n\n### Response:\n") in prompt


def test_newlines_inside_texts_do_not_break_the_template():
    frame = pd.DataFrame({"query_text": ["a\nb"], "target_text": ["c\r\nd"]})
    assert "Query: a b\nCategory: c d\n\n" in build_prompts(frame, task="QC")[0]


# ------------------------------------------------------------------------------ ICL


def pool_frame():
    data = [  # id, language, query, target, label
        ("1", "en", "red running shoes", "nike red running shoes men", 1),
        ("2", "es", "zapatos rojos", "zapatos rojos de cuero", 1),
        ("3", "fr", "sac à dos", "sac à dos noir adidas", 1),
        ("4", "ja", "ノートパソコン", "ノートパソコン 15インチ", 1),
        ("5", "en", "red running shoes", "blue cotton t-shirt", 0),
        ("6", "es", "harina", "zapatos rojos de cuero", 0),
        ("7", "ko", "운동화", "유리컵 세트", 0),
        ("8", "pt", "arroz", "camiseta azul", 0),
        ("9", "en", "coffee mug", "ceramic coffee mug 350ml", 1),
        ("10", "fr", "farine", "casque audio sans fil", 0),
    ]
    frame = pd.DataFrame(data, columns=["id", "language", "query_text", "target_text", "label"])
    frame["label"] = frame["label"].astype("Int8")
    return frame


def labels_of(pool, picks):
    return [int(pool["label"][j]) for j in picks]


@pytest.mark.parametrize("strategy", ["fixed", "similar"])
@pytest.mark.parametrize("k", [2, 3, 4])
def test_select_examples_balanced_never_self_deterministic(strategy, k):
    pool = pool_frame()
    picks = select_examples(pool, pool, k=k, strategy=strategy, seed=3, exclude_same_id=True)
    assert len(picks) == len(pool)
    for i, chosen in enumerate(picks):
        assert len(chosen) == k and len(set(chosen)) == k
        assert i not in chosen
        assert labels_of(pool, chosen) == [1, 0, 1, 0][:k]
    assert picks == select_examples(pool, pool, k=k, strategy=strategy, seed=3,
                                    exclude_same_id=True)


def test_fixed_examples_shared_multilingual_and_seeded():
    pool = pool_frame()
    outside = pd.DataFrame({"id": ["1", "2"], "query_text": ["x", "y"], "target_text": ["z", "w"]})
    picks = select_examples(outside, pool, k=4, strategy="fixed", seed=0)
    assert picks[0] == picks[1]
    assert len({pool["language"][j] for j in picks[0]}) == 4
    others = {tuple(select_examples(outside, pool, k=4, strategy="fixed", seed=s)[0])
              for s in range(6)}
    assert len(others) > 1
    # a row that is one of the fixed examples gets a replacement of the same class
    fixed = picks[0]
    own = select_examples(pool.iloc[[fixed[0]]], pool, k=4, strategy="fixed", seed=0,
                          exclude_same_id=True)[0]
    assert fixed[0] not in own and labels_of(pool, own) == [1, 0, 1, 0]


def test_identical_pair_never_returned_even_with_other_id():
    pool = pool_frame()
    row = pool.iloc[[0]].assign(id="eval-1")
    for strategy in ("fixed", "similar"):
        for seed in range(5):
            (chosen,) = select_examples(row, pool, k=4, strategy=strategy, seed=seed)
            assert 0 not in chosen


def test_similar_picks_near_duplicate_neighbours():
    pool = pool_frame()
    row = pd.DataFrame({"id": ["q"], "query_text": ["red running shoe"],
                        "target_text": ["nike red running shoes for men"]})
    (chosen,) = select_examples(row, pool, k=2, strategy="similar", seed=0)
    assert chosen == [0, 4]          # nearest yes, then nearest no (same query, other item)
    (fixed,) = select_examples(row, pool, k=2, strategy="similar", seed=0,
                               exclude_same_id=True)
    assert fixed == [0, 4]           # ids differ: nothing excluded


def test_to_examples_and_errors():
    pool = pool_frame()
    examples = to_examples(pool, [[0, 4]])
    assert examples == [[Example("red running shoes", "nike red running shoes men", 1),
                         Example("red running shoes", "blue cotton t-shirt", 0)]]
    only_yes = pool[pool["label"] == 1].reset_index(drop=True)
    with pytest.raises(HarnessError, match="'no' rows"):
        select_examples(only_yes, only_yes, k=2, strategy="fixed", seed=0)
    with pytest.raises(ValueError):
        select_examples(pool, pool, k=1, strategy="fixed", seed=0)


def _synth_pool(tmp_path, rows: int) -> pd.DataFrame:
    from harness.data.loader import load_directory
    from harness.data.synth import generate

    generate(tmp_path, seed=0, scale="small")
    frame = load_directory(tmp_path, tasks=("QI",))["QI"].train.frame.iloc[:rows]
    return frame.assign(query_text=frame["origin_query"],
                        target_text=frame["item_title"]).reset_index(drop=True)


def test_large_pools_use_an_approximate_index_close_to_exact(tmp_path, monkeypatch):
    from sklearn.feature_extraction.text import TfidfVectorizer

    from harness.components import prompts

    pool = _synth_pool(tmp_path, 2000)
    exact = select_examples(pool, pool, k=2, strategy="similar", exclude_same_id=True)
    monkeypatch.setattr(prompts, "EXACT_SEARCH_MAX_POOL", 100)
    approx = select_examples(pool, pool, k=2, strategy="similar", exclude_same_id=True)
    labels = pool["label"].to_numpy()
    pairs = (pool["query_text"] + "\x1f" + pool["target_text"]).to_numpy()
    for i, (yes, no) in enumerate(approx):
        assert labels[yes] == 1 and labels[no] == 0
        assert pairs[yes] != pairs[i] and pairs[no] != pairs[i]   # never the row's own pair
    same_pair = pd.Series(range(len(pool))).groupby(pairs).apply(list)
    for members in same_pair[same_pair.map(len) > 1]:
        assert len({tuple(approx[i]) for i in members}) == 1     # one answer per distinct pair
    text = prompts._similarity_text(pool)
    matrix = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4)).fit_transform(text)

    def cosines(picks):
        return [matrix[i].multiply(matrix[j]).sum() for i, row in enumerate(picks) for j in row]

    exact_cos, approx_cos = cosines(exact), cosines(approx)
    as_good = sum(a >= e - 1e-6 for a, e in zip(approx_cos, exact_cos, strict=True))
    assert as_good / len(exact_cos) > 0.8
    assert sum(approx_cos) / sum(exact_cos) > 0.97
    # a second call on the same pool reuses its fitted index, other rows get their own picks
    assert select_examples(pool, pool, k=2, strategy="similar", exclude_same_id=True) == approx
    rows = pool.iloc[::7].reset_index(drop=True)
    assert select_examples(rows, pool, k=2, strategy="similar") == [
        approx[i] for i in range(0, len(pool), 7)]


def test_similarity_tfidf_matches_tfidfvectorizer_with_repeated_texts():
    from sklearn.feature_extraction.text import TfidfVectorizer

    rng = np.random.default_rng(0)
    words = ["red shoe", "zapato rojo", "usb cable", "télé 4k", "чехол", "phone case"]
    pool = [" ".join(rng.choice(words, 2)) for _ in range(300)]      # many repeats
    rows = [" ".join(rng.choice(words, 3)) for _ in range(50)] + ["never seen xyz"]
    reference = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), dtype=np.float32)
    pool_ref, rows_ref = reference.fit_transform(pool), reference.transform(rows)
    pool_distinct, pool_codes, rows_distinct, row_codes = similarity_tfidf(pool, rows)
    assert pool_distinct.shape[0] < len(set(pool)) + 1
    assert abs(pool_ref - pool_distinct[pool_codes]).max() < 1e-7
    assert abs(rows_ref - rows_distinct[row_codes]).max() < 1e-7
