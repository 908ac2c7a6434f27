"""Every category wildscan knows: names in EN/FR/DE/NL, legal note, risk tier, data status.

A *category* is a product concept ("elephant ivory", "reef coral"). A trained model
predicts a subset of them (its bundle's ``labels``); categories with ``has_data=False``
have no public training photos yet and can only be recognised through reference
galleries. Legal notes describe the *typical traded taxa*; they are a pointer for an
officer, never a legal determination, and always say to verify against the official lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LANGUAGES = ("en", "fr", "de", "nl")
GROUPS = ("wildlife", "lookalike", "benign")
RISK_TIERS = ("high", "medium", "low", "none")

# Special labels that are not categories.
UNCERTAIN = "uncertain"


@dataclass(frozen=True)
class Category:
    """One product category. ``cites``/``eu_annex`` describe the typical traded taxa."""

    id: str
    group: str
    names: dict[str, str]
    risk: str
    cites: str = ""  # e.g. "I", "I/II", "II", "" when not CITES-listed
    eu_annex: str = ""  # EU Wildlife Trade Regulation (EC) 338/97 annex: "A", "A/B", "B", ...
    has_data: bool = True
    data_note: str = ""
    hints: dict[str, str] = field(default_factory=dict)

    @property
    def is_wildlife(self) -> bool:
        return self.group == "wildlife"

    def name(self, lang: str = "en") -> str:
        return self.names.get(lang) or self.names["en"]

    def legal_note(self, lang: str = "en") -> str:
        """A short, plain-language legal pointer in ``lang`` (EN fallback)."""
        lang = lang if lang in LANGUAGES else "en"
        if not self.is_wildlife:
            return _NOT_WILDLIFE[lang]
        parts = []
        if self.cites or self.eu_annex:
            listing = _LISTING[lang].format(cites=self.cites or "—", annex=self.eu_annex or "—")
            parts.append(listing)
            parts.append(_ANNEX_RULE[lang][_annex_rule(self.eu_annex)])
        else:
            parts.append(_UNLISTED[lang])
        hint = self.hints.get(lang) or self.hints.get("en")
        if hint:
            parts.append(hint)
        parts.append(_VERIFY[lang])
        return " ".join(parts)

    def as_dict(self, lang: str | None = None) -> dict:
        """JSON-ready description; with ``lang`` only that language's name and note."""
        langs = (lang,) if lang else LANGUAGES
        return {
            "id": self.id,
            "group": self.group,
            "risk": self.risk,
            "cites_appendix": self.cites or None,
            "eu_annex": self.eu_annex or None,
            "has_training_data": self.has_data,
            "data_note": self.data_note or None,
            "names": {lg: self.name(lg) for lg in langs},
            "legal_notes": {lg: self.legal_note(lg) for lg in langs},
        }


_LISTING = {
    "en": "Typical traded species: CITES Appendix {cites}, EU Annex {annex}.",
    "fr": "Espèces typiquement commercialisées : CITES Annexe {cites}, UE Annexe {annex}.",
    "de": "Typisch gehandelte Arten: CITES Anhang {cites}, EU-Anhang {annex}.",
    "nl": "Gebruikelijk verhandelde soorten: CITES Bijlage {cites}, EU-Bijlage {annex}.",
}
_ANNEX_RULE = {
    "en": {
        "A": "Commercial trade in the EU is banned except under narrow exemptions (certificate needed).",
        "B": "Trade into or within the EU needs permits or proof of legal origin.",
        "AB": "Annex A species: commercial trade in the EU is banned except under narrow exemptions; Annex B species: trade needs permits or proof of legal origin.",
    },
    "fr": {
        "A": "Le commerce dans l'UE est interdit sauf dérogations étroites (certificat requis).",
        "B": "Le commerce vers ou dans l'UE exige des permis ou une preuve d'origine légale.",
        "AB": "Espèces de l'Annexe A : commerce interdit dans l'UE sauf dérogations étroites ; Annexe B : permis ou preuve d'origine légale requis.",
    },
    "de": {
        "A": "Der Handel in der EU ist bis auf enge Ausnahmen verboten (Bescheinigung nötig).",
        "B": "Handel in die oder in der EU braucht Genehmigungen oder einen Legalitätsnachweis.",
        "AB": "Arten in Anhang A: Handel in der EU bis auf enge Ausnahmen verboten; Anhang B: Genehmigungen oder Legalitätsnachweis nötig.",
    },
    "nl": {
        "A": "Handel in de EU is verboden, op beperkte uitzonderingen na (certificaat nodig).",
        "B": "Handel naar of binnen de EU vereist vergunningen of bewijs van legale herkomst.",
        "AB": "Soorten in Bijlage A: handel in de EU verboden, op beperkte uitzonderingen na; Bijlage B: vergunningen of bewijs van legale herkomst nodig.",
    },
}


def _annex_rule(annex: str) -> str:
    """Which trade sentence fits an annex string: "A", "B" or "AB" (species in both)."""
    if "A" in annex and "B" in annex:
        return "AB"
    return "A" if "A" in annex else "B"


_UNLISTED = {
    "en": "Most traded species are not CITES-listed, but some are, and national law may protect others.",
    "fr": "La plupart des espèces ne sont pas inscrites à la CITES, mais certaines le sont, et le droit national peut en protéger d'autres.",
    "de": "Die meisten gehandelten Arten sind nicht CITES-gelistet, einige aber schon; nationales Recht kann weitere schützen.",
    "nl": "De meeste verhandelde soorten staan niet op CITES, sommige wel, en nationaal recht kan andere beschermen.",
}
_VERIFY = {
    "en": "Verify the species against the official CITES and EU lists.",
    "fr": "Vérifiez l'espèce dans les listes officielles CITES et UE.",
    "de": "Art anhand der amtlichen CITES- und EU-Listen prüfen.",
    "nl": "Controleer de soort aan de hand van de officiële CITES- en EU-lijsten.",
}
_NOT_WILDLIFE = {
    "en": "No protected wildlife item was recognised in this photo. This is not a legal finding: "
    "check by eye, and against the ad text, when the ad suggests otherwise.",
    "fr": "Aucun objet d'espèce protégée n'a été reconnu sur cette photo. Ce n'est pas un avis juridique : "
    "vérifiez à l'œil, et avec le texte de l'annonce, si l'annonce laisse penser le contraire.",
    "de": "Auf diesem Foto wurde kein geschütztes Wildtierprodukt erkannt. Das ist keine rechtliche Bewertung: "
    "mit eigenen Augen und anhand des Anzeigentexts prüfen, wenn die Anzeige etwas anderes nahelegt.",
    "nl": "Op deze foto is geen beschermd product van wilde dieren of planten herkend. Dit is geen juridisch oordeel: "
    "controleer het zelf, ook aan de hand van de advertentietekst, als de advertentie iets anders doet vermoeden.",
}


def _c(id, group, en, fr, de, nl, risk, cites="", annex="", has_data=True, data_note="", hints=None):
    return Category(
        id=id,
        group=group,
        names={"en": en, "fr": fr, "de": de, "nl": nl},
        risk=risk,
        cites=cites,
        eu_annex=annex,
        has_data=has_data,
        data_note=data_note,
        hints=hints or {},
    )


_NO_DATA = "No public training photos yet: recognised only through a reference gallery."

# fmt: off
CATEGORIES: tuple[Category, ...] = (
    # --- wildlife and wildlife products -------------------------------------------------
    _c("ivory", "wildlife", "Elephant ivory (carving or object)", "Ivoire d'éléphant (sculpture ou objet)",
       "Elfenbein (Schnitzerei oder Objekt)", "Olifantenivoor (snijwerk of voorwerp)", "high", "I/II", "A",
       data_note="Trained on museum studio photos of ivory carvings only.",
       hints={"en": "Look-alikes are legal: bone, resin, ceramic, mammoth ivory (check the seller's claim).",
              "fr": "Sosies légaux : os, résine, céramique, ivoire de mammouth (vérifier l'affirmation du vendeur).",
              "de": "Legale Doppelgänger: Knochen, Harz, Keramik, Mammut-Elfenbein (Angabe des Verkäufers prüfen).",
              "nl": "Legale lookalikes: been, hars, keramiek, mammoetivoor (controleer de bewering van de verkoper)."}),
    _c("reptile_skin_product", "wildlife", "Reptile-skin product (crocodile, alligator, python...)",
       "Produit en peau de reptile (crocodile, alligator, python...)", "Reptilleder-Produkt (Krokodil, Alligator, Python...)",
       "Product van reptielenleer (krokodil, alligator, python...)", "medium", "I/II", "A/B",
       data_note="Trained on about 100 photos of one shop's alligator goods; no python or lizard leather.",
       hints={"en": "Embossed cow leather imitates reptile skin; scale pattern alone is not proof."}),
    _c("reef_coral", "wildlife", "Reef coral (stony coral)", "Corail récifal (corail dur)", "Riffkoralle (Steinkoralle)",
       "Rifkoraal (steenkoraal)", "medium", "II", "B", data_note="Trained on underwater survey photos of live reef only."),
    _c("snake", "wildlife", "Snake (live)", "Serpent (vivant)", "Schlange (lebend)", "Slang (levend)", "medium", "I/II", "A/B"),
    _c("lizard", "wildlife", "Lizard, gecko, chameleon, iguana (live)", "Lézard, gecko, caméléon, iguane (vivant)",
       "Echse, Gecko, Chamäleon, Leguan (lebend)", "Hagedis, gekko, kameleon, leguaan (levend)", "medium", "I/II", "A/B"),
    _c("crocodilian", "wildlife", "Crocodile or alligator (live)", "Crocodile ou alligator (vivant)",
       "Krokodil oder Alligator (lebend)", "Krokodil of alligator (levend)", "medium", "I/II", "A/B"),
    _c("turtle_tortoise", "wildlife", "Turtle or tortoise (live)", "Tortue (vivante)", "Schildkröte (lebend)",
       "Schildpad (levend)", "medium", "I/II", "A/B"),
    _c("parrot", "wildlife", "Parrot, macaw, cockatoo", "Perroquet, ara, cacatoès", "Papagei, Ara, Kakadu",
       "Papegaai, ara, kaketoe", "medium", "I/II", "A/B", data_note="Few training photos (about 25)."),
    _c("bird_of_prey", "wildlife", "Bird of prey (hawk, falcon, owl)", "Rapace (buse, faucon, hibou)",
       "Greifvogel oder Eule (Habicht, Falke, Eule)", "Roofvogel of uil (havik, valk, uil)", "high", "I/II", "A",
       hints={"en": "All birds of prey and owls are in EU Annex A."}),
    _c("bird_other", "wildlife", "Other wild bird", "Autre oiseau sauvage", "Anderer Wildvogel", "Andere wilde vogel",
       "low", hints={"en": "Wild European birds are protected by the EU Birds Directive."}),
    _c("big_cat", "wildlife", "Big or wild cat (live)", "Grand félin ou chat sauvage (vivant)",
       "Großkatze oder Wildkatze (lebend)", "Grote of wilde kat (levend)", "high", "I/II", "A"),
    _c("butterfly_insect", "wildlife", "Butterfly or insect specimen", "Papillon ou insecte", "Schmetterling oder Insekt",
       "Vlinder of insect", "low", hints={"en": "Birdwing butterflies (Ornithoptera, Troides) are CITES Appendix II."}),
    _c("orchid", "wildlife", "Orchid", "Orchidée", "Orchidee", "Orchidee", "medium", "I/II", "A/B",
       hints={"en": "All orchids are CITES-listed; artificially propagated hybrids are often exempt."}),
    _c("cactus_succulent", "wildlife", "Cactus or succulent", "Cactus ou plante succulente", "Kaktus oder Sukkulente",
       "Cactus of vetplant", "medium", "I/II", "A/B",
       hints={"en": "All cacti are CITES-listed; many other succulents are not."}),
    _c("seahorse", "wildlife", "Seahorse", "Hippocampe", "Seepferdchen", "Zeepaardje", "medium", "II", "B",
       data_note="Trained on about 55 photos of live seahorses; no dried ones."),
    _c("taxidermy", "wildlife", "Taxidermy (mounted animal)", "Animal naturalisé", "Tierpräparat",
       "Opgezet dier", "medium", "I/II", "A/B",
       data_note="Trained on about 520 photos from taxidermy studios' websites (mounted heads, birds, fish).",
       hints={"en": "Mounts of protected species (big cats, birds of prey, many antelopes) need permits or are banned; "
                    "old mounts may be exempt with papers."}),
    _c("shark", "wildlife", "Shark (whole animal)", "Requin (animal entier)", "Hai (ganzes Tier)",
       "Haai (heel dier)", "medium", "II", "B",
       data_note="Trained on about 200 photos of live sharks; no fins, no dried products.",
       hints={"en": "Many traded sharks (hammerheads, oceanic whitetip, makos) are CITES Appendix II."}),
    _c("exotic_mammal", "wildlife", "Exotic pet mammal (primate, fennec fox, sugar glider...)",
       "Mammifère exotique de compagnie (primate, fennec, phalanger...)",
       "Exotisches Heimtier-Säugetier (Primat, Wüstenfuchs, Kurzkopfgleitbeutler...)",
       "Exotisch huisdier-zoogdier (primaat, woestijnvos, suikereekhoorn...)", "medium",
       data_note="Trained on about 110 sale photos of exotic pets, many hand-held.",
       hints={"en": "Lemurs and slow lorises are CITES Appendix I (EU Annex A); many other pet species are not listed."}),
    _c("amphibian", "wildlife", "Axolotl or other amphibian (live)", "Axolotl ou autre amphibien (vivant)",
       "Axolotl oder anderes Amphibium (lebend)", "Axolotl of andere amfibie (levend)", "low", "II", "B",
       data_note="Trained on about 100 sale photos of axolotls only."),
    _c("coral_jewellery", "wildlife", "Red or precious coral jewellery", "Bijou en corail rouge ou précieux",
       "Schmuck aus Edel- oder Rotkoralle", "Sieraad van rood of edel koraal", "medium", "III", "C/D",
       has_data=False, data_note="20 shop photos in data v2: too few to train; recognised only through a reference gallery."),
    _c("tortoiseshell", "wildlife", "Tortoiseshell (hawksbill shell) object", "Objet en écaille de tortue",
       "Schildpatt-Gegenstand", "Voorwerp van schildpad (karetschild)", "high", "I", "A", has_data=False, data_note=_NO_DATA),
    _c("pangolin_scales", "wildlife", "Pangolin scales", "Écailles de pangolin", "Schuppentier-Schuppen",
       "Schubben van schubdieren", "high", "I", "A", has_data=False, data_note=_NO_DATA),
    _c("rhino_horn", "wildlife", "Rhino horn", "Corne de rhinocéros", "Nashorn-Horn", "Neushoorn-hoorn", "high",
       "I/II", "A", has_data=False, data_note=_NO_DATA),
    _c("shark_fin", "wildlife", "Shark fin", "Aileron de requin", "Haifischflosse", "Haaienvin", "medium", "II", "B",
       has_data=False, data_note=_NO_DATA),
    _c("big_cat_skin", "wildlife", "Big-cat skin, fur or rug", "Peau, fourrure ou tapis de grand félin",
       "Fell oder Teppich einer Großkatze", "Huid, vacht of kleed van een grote kat", "high", "I", "A",
       has_data=False, data_note=_NO_DATA),
    # --- look-alikes: legal items that resemble wildlife products ----------------------
    _c("ceramic_porcelain", "lookalike", "Ceramic or porcelain object", "Objet en céramique ou porcelaine",
       "Keramik- oder Porzellanobjekt", "Voorwerp van keramiek of porselein", "none"),
    _c("figurine", "lookalike", "Figurine, statue or carving (resin, wood, stone, bone, metal, clay)",
       "Figurine, statue ou sculpture (résine, bois, pierre, os, métal, argile)",
       "Figur, Statue oder Schnitzerei (Harz, Holz, Stein, Knochen, Metall, Ton)",
       "Beeldje, beeld of snijwerk (hars, hout, steen, been, metaal, klei)", "none"),
    _c("antique", "lookalike", "Antique or metal object (silver, gold, brass, furniture, coins)",
       "Objet ancien ou en métal (argent, or, laiton, meubles, monnaies)",
       "Antiquität oder Metallobjekt (Silber, Gold, Messing, Möbel, Münzen)",
       "Antiek of metalen voorwerp (zilver, goud, messing, meubels, munten)", "none"),
    _c("jewellery", "lookalike", "Jewellery (jade, gemstone, beads)", "Bijou (jade, pierre précieuse, perles)",
       "Schmuck (Jade, Edelstein, Perlen)", "Sieraad (jade, edelsteen, kralen)", "none"),
    _c("toy", "lookalike", "Toy or plush animal", "Jouet ou peluche", "Spielzeug oder Plüschtier",
       "Speelgoed of knuffel", "none"),
    _c("animal_print", "lookalike", "Animal-print textile (faux)", "Textile imprimé animal (imitation)",
       "Textil mit Tiermuster (Imitat)", "Textiel met dierenprint (imitatie)", "none"),
    _c("leather_goods", "lookalike", "Ordinary leather goods", "Maroquinerie ordinaire", "Gewöhnliche Lederwaren",
       "Gewone lederwaren", "none"),
    # --- everything else ----------------------------------------------------------------
    _c("clothing", "benign", "Clothing or fashion item", "Vêtement ou article de mode", "Kleidung oder Modeartikel",
       "Kleding of modeartikel", "none"),
    _c("goods_other", "benign", "Other goods (household, electronics, ...)", "Autres objets (maison, électronique, ...)",
       "Andere Waren (Haushalt, Elektronik, ...)", "Andere goederen (huishouden, elektronica, ...)", "none"),
    _c("animal_other", "benign", "Other animal", "Autre animal", "Anderes Tier", "Ander dier", "none"),
    _c("plant_other", "benign", "Other plant", "Autre plante", "Andere Pflanze", "Andere plant", "none"),
    _c("marine_other", "benign", "Shell or other sea life", "Coquillage ou autre vie marine",
       "Muschel oder anderes Meereslebewesen", "Schelp of ander zeeleven", "none"),
    _c("person", "benign", "Person", "Personne", "Person", "Persoon", "none"),
    _c("scene", "benign", "Scene or background", "Scène ou arrière-plan", "Szene oder Hintergrund",
       "Scène of achtergrond", "none"),
)
# fmt: on

_BY_ID = {c.id: c for c in CATEGORIES}
if len(_BY_ID) != len(CATEGORIES):  # pragma: no cover - guards edits to the table above
    raise RuntimeError("duplicate category id in CATEGORIES")


def get_category(category_id: str) -> Category:
    """Return the category with this id; raises ``KeyError`` naming the known ids."""
    try:
        return _BY_ID[category_id]
    except KeyError:
        raise KeyError(f"unknown category {category_id!r}; known: {', '.join(_BY_ID)}") from None


def list_categories(group: str | None = None) -> list[Category]:
    """All categories, or those of one group (``wildlife``, ``lookalike``, ``benign``)."""
    if group is not None and group not in GROUPS:
        raise ValueError(f"unknown group {group!r}; choose from {', '.join(GROUPS)}")
    return [c for c in CATEGORIES if group is None or c.group == group]


def label_name(label: str, lang: str = "en") -> str:
    """Display name for a result label (a category id or ``uncertain``)."""
    if label == UNCERTAIN:
        return {"en": "Uncertain", "fr": "Incertain", "de": "Unsicher", "nl": "Onzeker"}.get(lang, "Uncertain")
    return get_category(label).name(lang)
