import pytest
from comfyui_sagemaker.core import names
from comfyui_sagemaker.core.errors import NameInvalid

BAD = [
    "", "a" * 21, "a b", "a_b", "a-b", "../x", "a/b", "a\\b", "a\0b", "é", "中文", "ａ",
    " abc", "abc ", "abc\n", "\tabc", 5, None, ["a"],
]


@pytest.mark.parametrize("rule", [names.TEMPLATE_NAME, names.ENVIRONMENT_NAME])
@pytest.mark.parametrize("name", BAD, ids=repr)
def test_bad_names_are_refused(rule, name):
    with pytest.raises(NameInvalid) as exc:
        rule.check(name)
    assert exc.value.code == "invalid_name"
    assert exc.value.message


@pytest.mark.parametrize("name", ["a", "A", "Foo", "foo", "a" * 20, "Z9", "0"])
def test_good_names_pass(name):
    assert names.TEMPLATE_NAME.check(name) == name


def test_rules_as_served_to_the_browser():
    rules = names.rules()
    assert rules["template_name"]["pattern"] == "^[A-Za-z0-9]{1,20}$"
    assert rules["template_name"]["max_length"] == 20
    assert rules["template_name"]["case_sensitive"] is True
    assert rules["environment_name"]["case_sensitive"] is False


def test_trailing_newline_is_not_accepted_by_the_served_pattern_in_python_terms():
    # The served pattern is anchored for JS; Python checks with fullmatch.
    import re

    assert re.fullmatch(names.TEMPLATE_NAME.pattern, "abc\n") is None
