"""The taxonomy: complete, translated, legally worded, with data gaps marked."""

import pytest

from vision.taxonomy import CATEGORIES, LANGUAGES, UNCERTAIN, get_category, label_name, list_categories

NO_DATA_YET = {"coral_jewellery", "tortoiseshell", "pangolin_scales", "rhino_horn", "shark_fin", "big_cat_skin"}


def test_every_category_has_four_distinct_language_names():
    for cat in CATEGORIES:
        assert set(cat.names) == set(LANGUAGES), cat.id
        assert all(cat.names[lang].strip() for lang in LANGUAGES)
    # translations really differ from English for most categories
    assert sum(cat.names["fr"] != cat.names["en"] for cat in CATEGORIES) > len(CATEGORIES) * 0.8


def test_wildlife_notes_cite_the_rules_and_say_verify():
    verify = {"en": "Verify", "fr": "Vérifiez", "de": "prüfen", "nl": "Controleer"}
    for cat in list_categories("wildlife"):
        for lang in LANGUAGES:
            note = cat.legal_note(lang)
            assert verify[lang] in note, (cat.id, lang)
            if cat.cites:
                assert "CITES" in note and cat.cites in note
    ivory = get_category("ivory")
    assert "Annex A" in ivory.legal_note("en") and "banned" in ivory.legal_note("en")
    for lang in LANGUAGES:  # an unflagged photo never reads as a legal all-clear
        note = get_category("ceramic_porcelain").legal_note(lang).lower()
        assert "cites" not in note and "no protected" in get_category("ceramic_porcelain").legal_note("en").lower()


def test_categories_without_public_data_are_marked():
    ids = {c.id for c in CATEGORIES}
    assert ids >= NO_DATA_YET
    for cid in NO_DATA_YET:
        cat = get_category(cid)
        assert not cat.has_data and cat.group == "wildlife" and "gallery" in cat.data_note


def test_groups_and_risk():
    assert {c.group for c in CATEGORIES} == {"wildlife", "lookalike", "benign"}
    assert get_category("ivory").risk == "high"
    assert all(c.risk == "none" for c in CATEGORIES if not c.is_wildlife)


def test_unknown_category_names_the_choices():
    with pytest.raises(KeyError, match=r"unknown category 'unicorn'.*ivory"):
        get_category("unicorn")


def test_label_names():
    assert label_name("ivory", "de") == "Elfenbein (Schnitzerei oder Objekt)"
    assert label_name(UNCERTAIN, "nl") == "Onzeker"
    assert get_category("orchid").as_dict("fr")["names"] == {"fr": "Orchidée"}


def test_mixed_annex_notes_do_not_overstate_the_ban():
    snake = get_category("snake").legal_note("en")  # EU Annex A/B: some banned, most need permits
    assert "Annex A species" in snake and "Annex B species" in snake
    assert "Annex B species" not in get_category("ivory").legal_note("en")
    assert "permits" in get_category("reef_coral").legal_note("en") and "banned" not in get_category(
        "reef_coral"
    ).legal_note("en")
