"""Language codes: normalising locale tags to the codes the router uses.

Router codes are ISO 639-1 where one exists (as in the paper's Table 1), else ISO 639-3.
"""

from __future__ import annotations

import langcodes

#: The 100 pre-training languages of XLM-R (Conneau et al. 2020, Table 6), romanised
#: variants folded into their language. multilingual-e5 shares this vocabulary and data.
XLMR_LANGUAGES = frozenset(
    "af am ar as az be bg bn br bs ca cs cy da de el en eo es et eu fa fi fr fy ga gd gl gu ha he hi "
    "hr hu hy id is it ja jv ka kk km kn ko ku ky la lo lt lv mg mk ml mn mr ms my nb ne nl om or pa "
    "pl ps pt ro ru sa sd si sk sl so sq sr su sv sw ta te th tl tr ug uk ur uz vi xh yi zh".split()
)

#: Tags whose normalised code should be merged into another router code.
ALIASES = {"no": "nb", "fil": "tl", "iw": "he", "in": "id", "ji": "yi", "mo": "ro"}


def normalize_code(tag: str) -> str:
    """Map a locale or BCP 47 tag (``pt-BR``, ``deu``, ``cmn-Hans``) to a router code (``pt``, ``de``, ``zh``)."""
    tag = tag.replace("_", "-")
    try:
        code = langcodes.Language.get(langcodes.standardize_tag(tag, macro=True)).language or tag
    except (ValueError, langcodes.tag_parser.LanguageTagError):
        code = tag.split("-")[0].lower()
    return ALIASES.get(code, code)


def language_name(code: str) -> str:
    """English name of a language code (``de`` -> ``German``)."""
    try:
        return langcodes.Language.get(code).display_name("en")
    except (ValueError, langcodes.tag_parser.LanguageTagError):
        return code
