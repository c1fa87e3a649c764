import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.pnl import IdentityError, Movement, PnlLines, by_category, is_activity, summarize

CATEGORIES = ["charge", "refund", "refund_failure", "partial_capture_reversal", "dispute",
              "dispute_reversal", "fee", "tax", "network_cost", "other_adjustment", "payout",
              "payout_reversal", "transfer", "topup", "risk_reserved_funds", "brand_new_category"]  # fmt: skip


def mv(cat: str, amount: int, fee: int = 0, currency: str = "usd") -> Movement:
    return Movement(cat, currency, amount, fee, amount - fee)


def test_lines_by_category() -> None:
    out = summarize([
        mv("charge", 10000, 320), mv("charge", 5000, 175), mv("refund", -2000),
        mv("dispute", -5000, 1500), mv("dispute_reversal", 5000, -1500), mv("fee", -999),
        mv("tax", -80), mv("other_adjustment", 123), mv("brand_new_category", 7),
        mv("payout", -9000), mv("transfer", -100), mv("risk_reserved_funds", -50),
    ])["usd"]  # fmt: skip
    lines = out.lines
    assert lines.gross_revenue == 15000
    assert lines.refunds == -2000
    assert lines.disputes == 0
    assert lines.stripe_fees == -(320 + 175 + 1500 - 1500) - 999 - 80
    assert lines.other == 130
    assert lines.payouts == -9000
    assert lines.net_revenue == 15000 - 2000 + 0 + lines.stripe_fees + 130
    assert out.charges == 2
    assert out.refunds_count == 1
    assert out.transactions == 12


def test_currencies_never_mix() -> None:
    out = summarize([mv("charge", 1000, currency="usd"), mv("charge", 1000, currency="jpy")])
    assert set(out) == {"jpy", "usd"}
    assert out["usd"].lines.gross_revenue == 1000 and out["jpy"].lines.gross_revenue == 1000


def test_identity_violation_detected() -> None:
    with pytest.raises(IdentityError):
        summarize([Movement("charge", "usd", 1000, 30, 1000)])


@pytest.mark.parametrize(
    ("cat", "activity"),
    [("charge", True), ("payout", False), ("transfer_reversal", False), ("topup", False),
     ("connect_reserved_funds", False), ("unknown_thing", True)],
    ids=str,
)  # fmt: skip
def test_activity(cat: str, activity: bool) -> None:
    assert is_activity(cat) is activity


movements = st.lists(
    st.builds(
        mv,
        st.sampled_from(CATEGORIES),
        st.integers(min_value=-(10**9), max_value=10**9),
        st.integers(min_value=-(10**6), max_value=10**6),
        st.sampled_from(["usd", "eur", "jpy"]),
    ),
    max_size=60,
)


@given(movements)
def test_identity_holds_for_every_input(ms: list[Movement]) -> None:
    for ccy, s in summarize(ms).items():
        activity_net = sum(
            m.net for m in ms if m.currency == ccy and is_activity(m.reporting_category)
        )
        assert s.lines.net_revenue == activity_net
        d = s.lines.as_dict()
        assert d["net_revenue"] == sum(
            d[k] for k in ("gross_revenue", "refunds", "disputes", "stripe_fees", "other")
        )


@given(movements)
def test_by_category_agrees_with_summary(ms: list[Movement]) -> None:
    cats = by_category(ms)
    for ccy, s in summarize(ms).items():
        assert sum(t.net for (c, _), t in cats.items() if c == ccy) == s.lines.net_revenue


def test_lines_add() -> None:
    a = PnlLines(gross_revenue=1, refunds=-1, payouts=5)
    assert (a + a).as_dict()["payouts"] == 10
