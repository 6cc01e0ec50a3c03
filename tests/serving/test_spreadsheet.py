import pytest

from fish_classifier.serving.spreadsheet import safe_cell


@pytest.mark.parametrize("text", ['=HYPERLINK("evil.example";"x").jpg', "+1.jpg", "-2.jpg", "@SUM(A1).jpg",
                                  "\t=1.jpg", "\r=1.jpg"])
def test_a_cell_a_spreadsheet_would_run_gets_a_leading_quote_and_keeps_the_name(text):
    assert safe_cell(text) == "'" + text


@pytest.mark.parametrize("value", ["trout.jpg", "photos/=x.jpg", "", "a-b.jpg", 0.5, None, True])
def test_other_cells_are_left_as_they_are(value):
    assert safe_cell(value) == value
