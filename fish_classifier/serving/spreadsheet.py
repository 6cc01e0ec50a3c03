"""Text that is safe to put in a CSV cell which a spreadsheet will open.

A cell that starts with `=`, `+`, `-` or `@` (or a tab or carriage return before one) is read by
Excel, LibreOffice and Google Sheets as a formula, so a photo named `=HYPERLINK(...).jpg` would run
when the CSV is opened. OWASP's advice, which those tools honour, is a leading `'`: the cell then shows
as text, and the rest of the value still names the file.
"""

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value):
    """`value` with a leading `'` when it is text a spreadsheet would run; anything else as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
