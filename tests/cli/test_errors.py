from fish_classifier.cli.errors import INTERRUPTED, TERMINATED, USAGE_ERROR, WRITE_FAILED, usage_error


def test_a_usage_error_is_one_line_on_stderr_and_exit_status_2(capsys):
    assert usage_error("no such file or folder: a.jpg") == USAGE_ERROR == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "fish-classifier: error: no such file or folder: a.jpg\n")


def test_the_exit_codes_are_the_ones_shells_report():
    assert (WRITE_FAILED, INTERRUPTED, TERMINATED) == (1, 128 + 2, 128 + 15)  # SIGINT 2, SIGTERM 15
