import pandas as pd
import pytest

from harness.components.tagging import (
    ATTRIBUTE_KEYS,
    attribute_tags,
    extract_attributes,
    hierarchical_category_tag,
    language_tag,
    load_attribute_vocab,
    qc_leaf_lookup,
    split_category_path,
)
from harness.errors import ConfigError, HarnessError

FLOUR = "food,grocery,flour, baking and cooking,flour"


@pytest.fixture(scope="module")
def vocab():
    return load_attribute_vocab(None)


def test_language_tag_exact_and_keeps_index():
    out = language_tag(pd.Series(["zapatos rojos", "赤い靴"], index=[7, 9]),
                       pd.Series(["es", "ja"], index=[7, 9]))
    assert out.tolist() == ["[LANG=es] zapatos rojos", "[LANG=ja] 赤い靴"]
    assert out.index.tolist() == [7, 9]


def test_split_reference_cuts_level_names_smart_keeps_them():
    assert split_category_path(FLOUR, mode="reference") == [
        "food", "grocery", "flour", "baking and cooking", "flour"]
    assert split_category_path(FLOUR, mode="smart") == [
        "food", "grocery", "flour, baking and cooking", "flour"]
    assert split_category_path("home & garden,arts, crafts & sewing,,", mode="smart") == [
        "home & garden", "arts, crafts & sewing"]
    assert split_category_path("a, b", mode="reference") == ["a", "b"]


def test_hct_reference_byte_for_byte_and_smart():
    paths = pd.Series([FLOUR, "sports"])
    reference = hierarchical_category_tag(paths, mode="reference")
    assert reference[0] == ("[D1] food [/D1] [D2] grocery [/D2] [D3] flour [/D3] "
                            "[D4] baking and cooking [/D4] [D5] flour [/D5]")
    assert reference[1] == "[D1] sports [/D1]"
    smart = hierarchical_category_tag(paths, mode="smart")
    assert smart[0] == ("[D1] food [/D1] [D2] grocery [/D2] "
                        "[D3] flour, baking and cooking [/D3] [D4] flour [/D4]")


TITLES = {
    "Nike Camiseta roja de algodón talla M":
        dict(brand="nike", color="red", size="M", material="cotton", product_type="t-shirt"),
    "ナイキ Tシャツ 黒 サイズ L コットン":
        dict(brand="nike", color="black", size="L", material="cotton", product_type="t-shirt"),
    "나이키 반팔 티셔츠 블랙 XL":
        dict(brand="nike", color="black", size="XL", product_type="t-shirt"),
    "เสื้อยืด สีแดง ผ้าฝ้าย": dict(color="red", material="cotton", product_type="t-shirt"),
    "Apple iPhone 15 Pro 128 GB Negro": dict(brand="apple", color="black", size="128gb",
                                             product_type="smartphone"),
    "Smart TV LG 55 pulgadas": dict(brand="lg", size="55in", product_type="tv"),
    "Sac à dos Adidas noir style rétro": dict(brand="adidas", color="black",
                                              product_type="backpack", style="vintage"),
    "Áo thun nam màu đen cotton size L": dict(color="black", size="L", material="cotton",
                                             product_type="t-shirt"),
    "Kurtka zimowa czarna rozmiar 42": dict(color="black", size="42", product_type="jacket"),
    "حذاء رياضي نايكي أسود": dict(brand="nike", color="black", product_type="sneakers",
                                   style="sport"),
    "Harina de trigo 1 kg": dict(size="1kg", product_type="flour"),
    # word boundaries: no colour in "Redmond", no bag in "Tasse" ... but a mug
    "Redmond Tasse": dict(product_type="mug"),
    "": {},
}


def test_extract_attributes_multilingual(vocab):
    titles = pd.Series(list(TITLES), index=range(10, 10 + len(TITLES)))
    table = extract_attributes(titles, vocab=vocab)
    assert list(table.columns) == list(ATTRIBUTE_KEYS)
    assert table.index.tolist() == titles.index.tolist()
    for title, row in zip(TITLES, table.to_dict("records"), strict=True):
        expected = {key: TITLES[title].get(key, "") for key in ATTRIBUTE_KEYS}
        assert row == expected, title


def test_extract_handles_missing_titles_and_repeats(vocab):
    table = extract_attributes(pd.Series(["Nike", None, "Nike"], dtype=object), vocab=vocab)
    assert table["brand"].tolist() == ["nike", "", "nike"]


def test_user_vocab_with_pattern_and_format(tmp_path):
    file = tmp_path / "vocab.yaml"
    file.write_text(
        "version: 1\nattributes:\n"
        "  brand:\n    values:\n      acme: [acme, アクメ]\n"
        "  size:\n    patterns:\n"
        "      - regex: '(?P<n>\\d+)\\s?(?:pack|pcs)'\n        format: '{n} pack'\n",
        encoding="utf-8")
    vocab = load_attribute_vocab(file)
    table = extract_attributes(pd.Series(["ACME socks 6 pcs", "アクメ靴下"]), vocab=vocab)
    assert table["brand"].tolist() == ["acme", "acme"]
    assert table["size"].tolist() == ["6pack", ""]
    assert table["color"].tolist() == ["", ""]
    assert len(vocab.digest) == 64


@pytest.mark.parametrize(("text", "where"), [
    ("attributes:\n  size:\n    values:\n      '42': [42]\n", "attributes.size.values.42"),
    ("attributes:\n  colour:\n    values: {}\n", "attributes.colour"),
    ("attributes:\n  color:\n    values:\n      red: [red]\n      pink: [Red]\n",
     "attributes.color.values.pink"),
    ("attributes:\n  size:\n    patterns:\n      - regex: '(unclosed'\n",
     "attributes.size.patterns[0].regex"),
    ("attributes:\n  size:\n    patterns:\n      - regex: 'x'\n        format: '{n}'\n",
     "attributes.size.patterns[0].format"),
    ("colors: {}\n", "attributes"),
    ("attributes: [oops\n", "invalid YAML"),
])
def test_bad_vocab_file_names_file_and_key(tmp_path, text, where):
    file = tmp_path / "bad.yaml"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_attribute_vocab(file)
    assert str(file) in str(error.value)
    assert where in str(error.value)
    assert isinstance(error.value, HarnessError)


def test_missing_vocab_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_attribute_vocab(tmp_path / "nope.yaml")


def qc_rows():
    return pd.DataFrame({
        "origin_query": ["Red  Shoes", "red shoes", "red shoes ", "red shoes", "harina", "x"],
        "category_path": ["fashion,shoes,sneakers", "fashion,shoes,sneakers",
                          "fashion,shoes,boots", "fashion,bags", FLOUR, "a,b"],
        "label": pd.array([1, 1, 1, 0, 1, None], dtype="Int8"),
    })


def test_qc_leaf_lookup_most_frequent_positive_leaf():
    assert qc_leaf_lookup(qc_rows()) == {"red shoes": "sneakers", "harina": "flour"}
    rows = qc_rows()
    rows.loc[4, "origin_query"] = "harina  de trigo"
    rows.loc[4, "category_path"] = "food,grocery,flour, baking and cooking"
    assert qc_leaf_lookup(rows, mode="smart")["harina de trigo"] == "flour, baking and cooking"
    assert qc_leaf_lookup(rows, mode="reference")["harina de trigo"] == "baking and cooking"


def test_attribute_tags_exact(vocab):
    rows = pd.DataFrame({
        "origin_query": ["Camiseta Nike", "RED shoes", "zzz", "qqq"],
        "item_title": ["Nike Camiseta roja de algodón talla M", "zapatillas", "nothing here",
                       "Tasse en céramique"],
    }, index=[3, 4, 5, 6])
    tags = attribute_tags(rows, vocab=vocab, qc_leaf={"camiseta nike": "t-shirts",
                                                      "red shoes": "sneakers"})
    assert tags.tolist() == [
        "[ATTR] brand: nike, color: red, size: M, material: cotton, product_type: t-shirt, "
        "category: t-shirts",
        "[ATTR] product_type: sneakers, category: sneakers",
        "",
        "[ATTR] material: ceramic, product_type: mug",
    ]
    assert tags.index.tolist() == [3, 4, 5, 6]
    assert attribute_tags(rows, vocab=vocab, qc_leaf=None)[4] == "[ATTR] product_type: sneakers"
