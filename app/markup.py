"""Text a user or a bundle chose (file names, species and model names), shown by Streamlit's markdown as typed."""

import re
import string

# A control character (a file name may hold a newline) would start a new markdown block: shown as a space.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
# Every ASCII punctuation mark, which CommonMark lets a backslash escape: no emphasis, link, autolink (https\://),
# math ($), heading, HTML, table, nor Streamlit's colour and icon directives (:red[...]) survive.
MARKDOWN_PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "])")


def literal(text: str) -> str:
    """`text` escaped so that Streamlit's markdown shows it as typed (names may hold * _ $ [ ] ( ) : ...).
    Emoji shortcodes (`:fish:`) still become emoji: a file name a user chose goes through `file_label`."""
    return MARKDOWN_PUNCTUATION.sub(r"\\\1", CONTROL_CHARACTERS.sub(" ", text))


def file_label(name: str) -> str:
    """A file name as markdown showing it as typed, in code type: a code span's text is never markup (no link,
    autolink, math, emoji or directive), and its fence is longer than any run of backticks in the name."""
    name = CONTROL_CHARACTERS.sub(" ", name)
    fence = "`" * (max(map(len, re.findall("`+", name)), default=0) + 1)
    return f"{fence} {name} {fence}"
