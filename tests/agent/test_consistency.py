"""Reasoning-action consistency: what the model named against the text at the executed point."""

from __future__ import annotations

import pytest

from agent.consistency import agrees, check_action, claimed_texts, intended_texts, judge
from tools.actions import LeftClick, Type
from tools.ocr import OcrLine, OcrResult
from tools.ocr_views import PointText, point_text
from tools.views import Box, ElementInfo

SCREEN = OcrResult(
    engine="test",
    size=(1280, 800),
    lines=[
        OcrLine(text="Sign in", box=(615, 482, 666, 504), score=1.0),
        OcrLine(text="Register", box=(700, 482, 770, 504), score=1.0),
        OcrLine(text="Username", box=(476, 329, 552, 349), score=1.0),
    ],
)


@pytest.mark.parametrize(
    ("reasoning", "claims"),
    [
        ('I will click the "Sign in" button to log in.', ["Sign in"]),
        ("I don't see it yet; click on Register to create an account", ["Register"]),
        ("Script step 5/21: Sign in", ["Sign in"]),
        ("Script step 1/21: Focus the username field", ["username"]),
        ("Script step 7/21: left_click on role='link', name='New product'", ["New product"]),
        ("我需要点击“发布”按钮。", ["发布"]),
        ("Script step 19/21: Attach the product photo", []),
        ("Script step 3/5: left_click coordinate=[200, 310]", []),  # a step without a note names nothing
        ("The page is loading.", []),
        ("Click on Northwind Goods heading", ["Northwind Goods"]),  # the kind of control is not its text
        ("Script step 3/4: pick the suggestion", []),  # a note that says what, not which: names nothing
    ],
)
def test_claims_are_quoted_or_named_texts(reasoning: str, claims: list[str]) -> None:
    assert claimed_texts(reasoning) == claims


def test_goal_values_count_when_the_reasoning_mentions_them() -> None:
    assert claimed_texts("Pick Audio as the category", goal_values=["Audio", "admin"]) == ["Audio"]
    # A value counts as a whole, not as a piece of a longer word or number (a replay names its source run's id).
    replayed = "Replayed step 4 of 20261128-025722-publish-product-a25f3c."
    assert claimed_texts(replayed, goal_values=["25", "39.90", "lamp"]) == []
    assert claimed_texts("Set the stock to 25.", goal_values=["25"]) == ["25"]
    assert set(claimed_texts("价格 39.90，选择上海。", goal_values=["39.90", "上海"])) == {"39.90", "上海"}


def test_agreement_is_lenient_about_case_plurals_and_extra_words_but_not_other_labels() -> None:
    assert agrees("sign in", "Sign in") and agrees("product list", "Products") and agrees("username", "Username")
    assert agrees("Publish the product", "Publish") and agrees("发布", "发布商品")
    assert not agrees("Sign in", "Register") and not agrees("Save draft", "Publish")


def test_a_click_on_another_label_than_the_one_named_is_a_mismatch() -> None:
    click = LeftClick(action="left_click", coordinate=[500, 615])
    at = point_text(SCREEN, (735, 493))  # on Register
    check = check_action(click, 'Click the "Sign in" button.', point=at)
    assert check is not None and check.verdict == "mismatch"
    assert check.claimed == ["Sign in"] and check.observed == {"ocr_under": "Register"}
    assert "'Sign in'" in check.reason and "'Register'" in check.reason
    same = check_action(click, 'Click the "Sign in" button.', point=point_text(SCREEN, (640, 493)))
    assert same is not None and same.verdict == "match" and same.matched == ("Sign in", "Sign in")


def test_the_dom_text_and_a_near_label_are_observed_too() -> None:
    click = LeftClick(action="left_click", coordinate=[1, 1])
    assert check_action(click, "click Register", element=dom("Register")).verdict == "match"  # type: ignore[union-attr]
    near = point_text(SCREEN, (500, 365))  # an empty input 16 px under its label
    check = check_action(click, "Script step 1/9: Focus the username field", point=near)
    assert check is not None and check.verdict == "match" and check.observed == {"ocr_nearest": "Username"}


def test_an_empty_field_is_known_by_its_label() -> None:
    """The bundled task's click into the empty Stock input was flagged a mismatch: OCR's nearest line to the
    point is the next field's label ('Category', 35 px below) while 'Stock' sits 45 px up and left. The browser
    knows the input's label."""
    click = LeftClick(action="left_click", coordinate=[280, 346])
    stock = ElementInfo(tag="input", text="", label="Stock", box=Box(x=269, y=260, width=180, height=34))
    nearest = PointText(
        point=(358, 277),
        nearest=OcrLine(text="Category", box=(264, 303, 335, 330), score=1.0),
        distance_px=34.7,
        description="",
    )
    check = check_action(click, "Script step 12/21: left_click on label='Stock'", element=stock, point=nearest)
    assert check is not None and check.verdict == "match" and check.matched == ("Stock", "Stock")
    assert check.observed == {"element_label": "Stock", "ocr_nearest": "Category"}
    price = stock.model_copy(update={"label": "Price (USD)", "text": "39.90"})
    wrong = check_action(click, "I'll click the 'Stock' field.", element=price)
    assert wrong is not None and wrong.verdict == "mismatch"
    assert wrong.observed == {"element": "39.90", "element_label": "Price (USD)"}


def test_nothing_named_or_nothing_seen_is_unknown_and_non_point_actions_are_not_judged() -> None:
    assert judge([], {"element": "Sign in"}).verdict == "unknown"
    assert judge(["Sign in"], {}).verdict == "unknown"
    assert check_action(Type(action="type", text="admin"), "type 'admin'") is None
    assert check_action(None, "click 'x'") is None


def dom(text: str) -> ElementInfo:
    return ElementInfo(tag="button", text=text, box=Box(x=0, y=0, width=10, height=10))


# (reasoning, text at the point, verdict): a reasoning that describes the screen before saying what it will do is
# judged on what it said it would do. Before, any text it named agreeing was a match (the first case was one).
INTENT = [
    ("I can see the 'Register' link and the 'Sign in' button. To log in, I'll click 'Sign in'.", "Register", "mismatch"),
    ("I can see the 'Register' link and the 'Sign in' button. To log in, I'll click 'Sign in'.", "Sign in", "match"),
    ("Click 'Sign in', not 'Register'.", "Register", "mismatch"),
    ("Instead of clicking 'Register', I'll click 'Sign in'.", "Register", "mismatch"),
    ("I should not click 'Delete'; instead click 'Save'.", "Delete", "mismatch"),
    ("I should not click 'Delete'; instead click 'Save'.", "Save", "match"),
    ("The 'Publish' button is at the bottom of the form. I will click it.", "Publish product", "match"),
    ("The 'Publish' button is at the bottom of the form. I will click it.", "Save draft", "mismatch"),
    ("I see a sidebar with Dashboard, Products and Orders. I should click on Products to see the list.", "Orders", "mismatch"),
    ("我看到“注册”和“登录”。我要点击“登录”。", "注册", "mismatch"),
    ("我看到“注册”和“登录”。我要点击“登录”。", "登录", "match"),
]


@pytest.mark.parametrize(("reasoning", "seen", "verdict"), INTENT)
def test_what_the_reasoning_says_it_will_do_is_what_is_judged(reasoning: str, seen: str, verdict: str) -> None:
    check = check_action(LeftClick(action="left_click", coordinate=[1, 1]), reasoning, element=dom(seen))
    assert check is not None and check.verdict == verdict, check


def test_intended_texts_leave_out_descriptions_refusals_and_pronouns() -> None:
    assert intended_texts("I see 'A' and 'B'. I will click 'B', not 'A'.") == ["B"]
    assert intended_texts("The 'Publish' button is below. Click it.") == []
    assert claimed_texts("The 'Publish' button is below. Click it.") == ["Publish"]  # what the verdict falls back to


def test_a_css_selector_in_the_reasoning_names_no_text_on_the_screen() -> None:
    """A script's target by selector (a MiniWoB++ demonstration) was a mismatch on every such click: '#subbtn'
    against the button's 'Submit'. A selector is not a claim; a text beside it still is."""
    click = LeftClick(action="left_click", coordinate=[500, 615])
    submit = ElementInfo(tag="button", text="Submit", box=Box(x=0, y=0, width=80, height=30))
    check = check_action(click, "Script step 5/6: left_click on selector='#subbtn'", element=submit)
    assert check is not None and check.verdict == "unknown" and check.claimed == []
    for selector in ("#area button", ".btn-primary", "button[type=submit]", "div.row > a"):
        assert claimed_texts(f"click '{selector}'") == [], selector
    assert claimed_texts("Script step 1/2: left_click on selector='#area button' text='Submit'") == ["Submit"]
    wrong = check_action(click, "Script step 1/2: left_click on selector='#area button' text='Cancel'", element=submit)
    assert wrong is not None and wrong.verdict == "mismatch"  # the named text is still judged
    # Model output is untrusted: a quoted text built to make a selector pattern backtrack (the first version of
    # this check took 37 s on 30 characters) is simply a claim.
    hostile = "#" + "a" * 57 + "!"
    assert claimed_texts(f"click '{hostile}'") == [hostile]
    assert claimed_texts("click '#a" + " a" * 27 + "!'") == ["#a" + " a" * 27 + "!"]


def test_a_click_on_empty_space_is_not_a_match_because_the_page_says_save_somewhere() -> None:
    click = LeftClick(action="left_click", coordinate=[900, 900])
    page = "Account settings Choose carefully. Save Delete"
    body = ElementInfo(tag="BODY", text=page, box=Box(x=0, y=0, width=1280, height=800))
    nothing_near = point_text(SCREEN, (1270, 790))  # no OCR line under or near the point
    check = check_action(click, "Script step 1/2: Click Save", element=body, point=nothing_near)
    assert check is not None and check.verdict == "unknown", check
    panel = ElementInfo(tag="div", text="Shipping address " * 5 + "Save", box=Box(x=0, y=0, width=600, height=400))
    assert check_action(click, 'Click "Save"', element=panel).verdict == "unknown"  # type: ignore[union-attr]
    # A control's own short text still counts, and the OCR line under the point decides where it can.
    button = ElementInfo(tag="button", text="Save", box=Box(x=0, y=0, width=80, height=30))
    assert check_action(click, 'Click "Save"', element=button).verdict == "match"  # type: ignore[union-attr]
    on_register = point_text(SCREEN, (735, 493))
    assert check_action(click, 'Click "Sign in"', element=body, point=on_register).verdict == "mismatch"  # type: ignore[union-attr]
