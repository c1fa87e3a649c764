"""Investor metrics (bot.metrics): MRR at an instant, per customer, and the monthly roll-forward.

Pure and fast: Stripe-shaped JSON objects are built here, parsed by the module's own parsers
(so the parsing is tested on the way), and computed on. Hand-written cases cover each clause of
the definitions; hypothesis checks the invariants (the roll-forward identity, a customer's MRR
not depending on how their items are split into subscriptions, interval normalisation).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.metrics import (
    METRICS_COLUMNS,
    MalformedObject,
    MetricsIdentityError,
    MetricsRow,
    RollForward,
    Unsupported,
    customer_mrr,
    month_end,
    monthly_factor,
    mrr_at,
    parse_invoice,
    parse_price,
    parse_subscription,
    roll_forward,
    shown,
    shown_major,
    unsupported,
)
from bot.periods import Month

Json = dict[str, Any]
BERLIN = ZoneInfo("Europe/Berlin")
DAY = 86400
_ids = itertools.count(1)


def ts(y: int, m: int, d: int = 1, h: int = 0, mi: int = 0, s: int = 0, tz: tzinfo = UTC) -> int:
    return int(datetime(y, m, d, h, mi, s, tzinfo=tz).timestamp())


def starts(first: str, n: int, tz: tzinfo = UTC) -> list[int]:
    """The first seconds of ``n`` + 1 consecutive months from ``first``: n monthly periods."""
    m = Month.parse(first)
    out = []
    for _ in range(n + 1):
        out.append(m.interval(tz).start)
        m = m.next()
    return out


# -- Stripe-shaped objects (the older API shape unless said) -----------------------------------


def price(pid: str = "price_basic", unit: int | None = 1000, interval: str | None = "month",
          count: int = 1, usage: str = "licensed", currency: str = "usd", **extra: Any) -> Json:  # fmt: skip
    return {
        "id": pid, "object": "price", "currency": currency, "unit_amount": unit,
        "billing_scheme": "per_unit", "type": "recurring" if interval else "one_time",
        "recurring": {"interval": interval, "interval_count": count, "usage_type": usage}
        if interval else None,
        **extra,
    }  # fmt: skip


def coupon(duration: str = "forever", percent: Any = None, amount_off: int | None = None) -> Json:
    return {"id": f"co_{next(_ids)}", "object": "coupon", "duration": duration,
            "percent_off": percent, "amount_off": amount_off}  # fmt: skip


def discount(c: Json, start: int, sid: str = "sub_1") -> Json:
    return {"id": f"di_{next(_ids)}", "object": "discount", "coupon": c, "start": start,
            "end": None, "subscription": sid, "customer": "cus_1"}  # fmt: skip


def sub(sid: str = "sub_1", customer: str = "cus_1", start: int | None = None,
        items: Mapping[str, Json] | None = None, currency: str = "usd", **extra: Any) -> Json:  # fmt: skip
    items = items if items is not None else {"si_1": price(currency=currency)}
    return {
        "id": sid, "object": "subscription", "customer": customer, "currency": currency,
        "start_date": ts(2026, 1) if start is None else start, "ended_at": None,
        "trial_start": None, "trial_end": None, "status": "active", "discount": None,
        "items": {"object": "list", "has_more": False, "data": [
            {"id": si, "object": "subscription_item", "price": p, "quantity": 1}
            for si, p in items.items()
        ]},
        **extra,
    }  # fmt: skip


def line(amount: int, start: int, end: int, p: Json | None = None, qty: int | None = 1,
         item: str | None = "si_1", proration: bool = False, **extra: Any) -> Json:  # fmt: skip
    p = p if p is not None else price()
    return {
        "id": f"il_{next(_ids)}", "object": "line_item", "amount": amount,
        "currency": p["currency"], "period": {"start": start, "end": end}, "price": p,
        "quantity": qty, "subscription_item": item, "proration": proration,
        "type": "invoiceitem" if proration else "subscription", **extra,
    }  # fmt: skip


def invoice(lines: Sequence[Json], status: str = "paid", sid: str | None = "sub_1",
            customer: str = "cus_1", currency: str = "usd", **extra: Any) -> Json:  # fmt: skip
    return {
        "id": f"in_{next(_ids)}", "object": "invoice", "customer": customer,
        "subscription": sid, "currency": currency, "status": status,
        "lines": {"object": "list", "has_more": False, "data": list(lines), "url": "/v1/x"},
        **extra,
    }  # fmt: skip


def monthly(sid: str, customer: str, first: str, n: int, p: Json | None = None, qty: int = 1,
            currency: str = "usd", tz: tzinfo = UTC, ended: bool = False, item: str = "si_1",
            status: str = "paid") -> tuple[Json, list[Json]]:  # fmt: skip
    """A monthly subscription billed for ``n`` months from ``first``; ended after them if
    ``ended`` (a cancellation at the period end)."""
    p = p if p is not None else price(f"price_{sid}", currency=currency)
    bounds = starts(first, n, tz)
    s = sub(sid, customer, bounds[0], {item: p}, currency,
            ended_at=bounds[-1] if ended else None)  # fmt: skip
    invs = [
        invoice([line(p["unit_amount"] * qty, a, b, p, qty, item)], status, sid, customer, currency)
        for a, b in itertools.pairwise(bounds)
    ]
    return s, invs


def mrr(s: Json, invs: Sequence[Json], t: int) -> Fraction:
    return mrr_at(parse_subscription(s), [parse_invoice(i) for i in invs], t)


def rf(subs: Sequence[Json], invs: Sequence[Json], through: str, tz: tzinfo = UTC) -> RollForward:
    return roll_forward(
        [parse_subscription(s) for s in subs],
        [parse_invoice(i) for i in invs],
        through=Month.parse(through),
        tz=tz,
    )


def row(report: RollForward, month: str, currency: str = "usd") -> MetricsRow:
    (found,) = [r for r in report.rows if str(r.month) == month and r.currency == currency]
    return found


def moves(r: MetricsRow) -> tuple[int, ...]:
    return tuple(
        int(getattr(r, k))
        for k in (
            "mrr_start",
            "new",
            "reactivation",
            "expansion",
            "contraction",
            "churn",
            "mrr_end",
        )
    )


def counts(r: MetricsRow) -> tuple[int, ...]:
    return (r.subscribers_start, r.new_subscribers, r.reactivated_subscribers,
            r.churned_subscribers, r.subscribers_end)  # fmt: skip


JAN, FEB, MAR = ts(2026, 1), ts(2026, 2), ts(2026, 3)
MID_JAN = ts(2026, 1, 15)


# -- a subscription's MRR: normalisation ----------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "count", "unit", "expected"),
    [("month", 1, 1000, 1000), ("month", 3, 3000, 1000), ("month", 6, 1000, Fraction(1000, 6)),
     ("year", 1, 12000, 1000), ("year", 2, 24000, 1000), ("year", 1, 1000, Fraction(1000, 12)),
     ("week", 1, 1200, 5200), ("week", 2, 1200, 2600), ("day", 1, 12, 365),
     ("day", 7, 700, Fraction(700 * 365, 84))],
    ids=["monthly", "quarterly", "half-yearly", "yearly", "two-yearly", "yearly-exact",
         "weekly", "fortnightly", "daily", "every-7-days"],
)  # fmt: skip
def test_each_interval_is_normalised_to_a_month(
    interval: str, count: int, unit: int, expected: Fraction | int
) -> None:
    p = price(unit=unit, interval=interval, count=count)
    inv = invoice([line(unit, JAN, JAN + 400 * DAY, p)])
    assert mrr(sub(items={"si_1": p}), [inv], JAN + 3600) == expected


def test_monthly_factor_refuses_what_is_not_an_interval() -> None:
    with pytest.raises(ValueError, match="fortnight"):
        monthly_factor("fortnight", 1)
    with pytest.raises(ValueError, match="at least 1"):
        monthly_factor("month", 0)


def test_quantity_multiplies_the_unit_amount() -> None:
    inv = invoice([line(3000, JAN, FEB, qty=3)])
    assert mrr(sub(), [inv], MID_JAN) == 3000


def test_a_quantity_change_mid_period_takes_effect_at_the_change() -> None:
    change = MID_JAN
    # Stripe's proration pair: unused time at the old quantity, remaining at the new one.
    pair = [line(-1645, change, FEB, qty=3, proration=True),
            line(2742, change, FEB, qty=5, proration=True)]  # fmt: skip
    invs = [
        invoice([line(3000, JAN, FEB, qty=3)]),
        invoice(pair),
        invoice([line(5000, FEB, MAR, qty=5)]),
    ]
    assert mrr(sub(), invs, change - 1) == 3000
    assert mrr(sub(), invs, change) == 5000
    assert mrr(sub(), invs, FEB - 1) == 5000
    assert mrr(sub(), invs, FEB) == 5000


def test_metered_items_one_time_prices_and_invoice_items_are_no_part_of_mrr() -> None:
    metered = price("price_usage", unit=5, usage="metered")
    setup = price("price_setup", unit=9900, interval=None)
    s = sub(items={"si_1": price(), "si_2": metered})
    inv = invoice([
        line(1000, JAN, FEB),
        line(12345, JAN, FEB, metered, qty=2469, item="si_2"),
        line(9900, JAN, FEB, setup, item=None),  # a one-off invoice item
        line(500, JAN, FEB, price("price_x", unit=500), item=None),  # recurring price, no item
    ])  # fmt: skip
    assert mrr(s, [inv], MID_JAN) == 1000


# -- trials, start and end ------------------------------------------------------------------------


def test_a_trial_that_converts_counts_from_its_end() -> None:
    trial_end = JAN + 14 * DAY
    s = sub(trial_start=JAN, trial_end=trial_end)
    invs = [
        invoice([line(0, JAN, trial_end)]),  # the trial's zero line adds nothing
        invoice([line(1000, trial_end, trial_end + 31 * DAY)]),
    ]
    assert mrr(s, invs, JAN) == 0
    assert mrr(s, invs, trial_end - 1) == 0
    assert mrr(s, invs, trial_end) == 1000


def test_a_trial_that_does_not_convert_never_counts() -> None:
    trial_end = JAN + 14 * DAY
    s = sub(trial_start=JAN, trial_end=trial_end, ended_at=trial_end, status="canceled")
    invs = [invoice([line(0, JAN, trial_end)])]
    assert [mrr(s, invs, t) for t in (JAN, trial_end - 1, trial_end, FEB)] == [0, 0, 0, 0]


def test_the_trial_window_is_zero_whatever_the_lines_say() -> None:
    s = sub(trial_start=JAN, trial_end=MID_JAN)
    invs = [invoice([line(1000, JAN, FEB)])]
    assert mrr(s, invs, MID_JAN - 1) == 0
    assert mrr(s, invs, MID_JAN) == 1000


def test_nothing_counts_before_start_date() -> None:
    s = sub(start=MID_JAN)
    invs = [invoice([line(1000, JAN, FEB)])]  # a line reaching back before the start
    assert mrr(s, invs, MID_JAN - 1) == 0
    assert mrr(s, invs, MID_JAN) == 1000


def test_an_upgrade_proration_pair_replaces_a_by_b_at_the_change() -> None:
    a, b = price("price_a", unit=1000), price("price_b", unit=3000)
    change = MID_JAN
    s = sub(items={"si_1": b})  # the item now has price B: the history is in the lines
    pair = [line(-548, change, FEB, a, proration=True),
            line(1645, change, FEB, b, proration=True)]  # fmt: skip
    invs = [invoice([line(1000, JAN, FEB, a)]), invoice(pair), invoice([line(3000, FEB, MAR, b)])]
    assert mrr(s, invs, change - 1) == 1000
    assert mrr(s, invs, change) == 3000
    assert mrr(s, invs, FEB) == 3000


def test_a_downgrade_at_renewal_counts_from_the_new_period() -> None:
    a, b = price("price_a", unit=3000), price("price_b", unit=1000)
    invs = [invoice([line(3000, JAN, FEB, a)]), invoice([line(1000, FEB, MAR, b)])]
    s = sub(items={"si_1": b})
    assert mrr(s, invs, FEB - 1) == 3000
    assert mrr(s, invs, FEB) == 1000


def test_cancelling_now_ends_mrr_at_ended_at() -> None:
    s = sub(ended_at=MID_JAN, status="canceled")
    invs = [
        invoice([line(1000, JAN, FEB)]),
        invoice([line(-548, MID_JAN, FEB, proration=True)]),  # the credit for unused time
    ]
    assert mrr(s, invs, MID_JAN - 1) == 1000
    assert mrr(s, invs, MID_JAN) == 0


def test_cancelling_at_period_end_counts_until_the_period_ends() -> None:
    s, invs = monthly("sub_1", "cus_1", "2026-01", 2, ended=True)
    assert mrr(s, invs, MAR - 1) == 1000
    assert mrr(s, invs, MAR) == 0


@pytest.mark.parametrize(
    ("status", "expected"),
    [("paid", 1000), ("open", 1000), ("uncollectible", 0), ("draft", 0), ("void", 0)],
    ids=["paid", "open-past-due", "uncollectible", "draft", "void"],
)  # fmt: skip
def test_invoice_status_decides_whether_lines_count(status: str, expected: int) -> None:
    assert mrr(sub(), [invoice([line(1000, JAN, FEB)], status)], MID_JAN) == expected


def test_a_voided_invoice_reissued_counts_once() -> None:
    invs = [invoice([line(1000, JAN, FEB)], "void"), invoice([line(1000, JAN, FEB)], "paid")]
    assert mrr(sub(), invs, MID_JAN) == 1000


def test_a_credit_without_its_charge_never_makes_mrr_negative() -> None:
    invs = [invoice([line(1000, JAN, FEB)], "void"),
            invoice([line(-548, MID_JAN, FEB, proration=True)])]  # fmt: skip
    assert mrr(sub(), invs, MID_JAN) == 0


# -- discounts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("c", "expected"),
    [(coupon("forever", 25), 750), (coupon("forever", 12.5), 875),
     (coupon("forever", 33.33), Fraction(6667, 10)), (coupon("once", 25), 1000),
     (coupon("repeating", 50), 1000), (coupon("forever", 100), 0)],
    ids=["forever-25", "forever-12.5", "forever-33.33-exact", "once", "repeating",
         "forever-100"],
)  # fmt: skip
def test_only_forever_coupons_change_mrr(c: Json, expected: Fraction | int) -> None:
    s = sub(discount=discount(c, JAN))
    assert mrr(s, [invoice([line(1000, JAN, FEB)])], MID_JAN) == expected


def test_a_forever_coupon_applies_from_its_start() -> None:
    s = sub(discount=discount(coupon("forever", 50), MID_JAN))
    invs = [invoice([line(1000, JAN, FEB)])]
    assert mrr(s, invs, MID_JAN - 1) == 1000
    assert mrr(s, invs, MID_JAN) == 500


def test_an_amount_off_coupon_counts_at_list_price_and_is_reported() -> None:
    s = parse_subscription(sub(discount=discount(coupon("forever", amount_off=300), JAN)))
    invs = [parse_invoice(invoice([line(1000, JAN, FEB)]))]
    assert mrr_at(s, invs, MID_JAN) == 1000
    assert unsupported([s], invs) == (Unsupported("sub_1", "an amount_off coupon"),)


# -- parsing: both API shapes, exact numbers, errors ---------------------------------------------


def _new_shape_line(
    amount: int, start: int, end: int, price_id: str, proration: bool = False
) -> Json:
    return {
        "id": f"il_{next(_ids)}", "object": "line_item", "amount": amount, "currency": "usd",
        "period": {"start": start, "end": end}, "quantity": 1,
        "pricing": {"type": "price_details", "unit_amount_decimal": None,
                    "price_details": {"price": price_id, "product": "prod_1"}},
        "parent": {"type": "subscription_item_details", "subscription_item_details": {
            "subscription_item": "si_1", "subscription": "sub_1", "proration": proration,
            "invoice_item": None}},
    }  # fmt: skip


def test_the_newer_api_shape_gives_the_same_mrr() -> None:
    basic, pro = price("price_basic", unit=1000), price("price_pro", unit=3000)
    c = coupon("forever", 20)
    old_s = sub(items={"si_1": pro}, discount=discount(c, JAN))
    old_invs = [invoice([line(1000, JAN, FEB, basic)]),
                invoice([line(-548, MID_JAN, FEB, basic, proration=True),
                         line(1645, MID_JAN, FEB, pro, proration=True)])]  # fmt: skip
    new_s = sub(items={"si_1": pro}, customer={"id": "cus_1", "object": "customer"})  # type: ignore[arg-type]
    del new_s["discount"]
    new_s["discounts"] = [{"id": "di_9", "object": "discount", "start": JAN, "end": None,
                           "subscription": "sub_1", "customer": "cus_1",
                           "source": {"type": "coupon", "coupon": c}}]  # fmt: skip
    parent = {"type": "subscription_details", "subscription_details": {"subscription": "sub_1"}}
    new_invs = [
        invoice([_new_shape_line(1000, JAN, FEB, "price_basic")], sid=None, parent=parent),
        invoice([_new_shape_line(-548, MID_JAN, FEB, "price_basic", True),
                 _new_shape_line(1645, MID_JAN, FEB, "price_pro", True)], sid=None, parent=parent),
    ]  # fmt: skip
    catalog = {"price_basic": parse_price(basic)}
    times = (JAN, MID_JAN - 1, MID_JAN, FEB - 1)
    old = [mrr(old_s, old_invs, t) for t in times]
    new_subscription = parse_subscription(new_s)
    new = [mrr_at(new_subscription, [parse_invoice(i, prices=catalog) for i in new_invs], t)
           for t in times]  # fmt: skip
    assert old == new == [800, 800, 2400, 2400]
    # Without the catalog, price_pro still resolves through the subscription's items;
    # price_basic does not, counts 0, and the subscription is reported.
    bare = [parse_invoice(i) for i in new_invs]
    assert mrr_at(new_subscription, bare, MID_JAN - 1) == 0
    assert mrr_at(new_subscription, bare, MID_JAN) == 2400
    assert unsupported([new_subscription], bare) == (
        Unsupported("sub_1", "an invoice line whose price is given only by its id"),
    )


def test_lines_beyond_the_first_page_come_separately() -> None:
    first = line(1000, JAN, FEB)
    rest = [line(500, JAN, FEB, price("price_addon", unit=500), item="si_2")]
    inv = invoice([first])
    inv["lines"]["has_more"] = True
    with pytest.raises(MalformedObject, match=rf"invoice {inv['id']}: lines\.has_more"):
        parse_invoice(inv)
    parsed = parse_invoice(inv, [first, *rest])  # the full list, first page included
    assert [ln.id for ln in parsed.lines] == [first["id"], rest[0]["id"]]
    assert mrr_at(parse_subscription(sub()), [parsed], MID_JAN) == 1500


def test_exact_amounts_from_decimals() -> None:
    p = price(unit=None, unit_amount_decimal="12.5")
    s = sub(items={"si_1": p})
    assert mrr(s, [invoice([line(38, JAN, FEB, p, qty=3)])], MID_JAN) == Fraction(75, 2)
    assert shown(Fraction(75, 2), "usd") == 38  # half-even: 37.5 -> 38
    assert parse_subscription(sub(discount=discount(coupon("forever", 0.1), JAN))).discounts[
        0
    ].coupon.percent_off == Fraction(1, 10)  # type: ignore[union-attr]


def test_transform_quantity_bills_packages() -> None:
    p = price(unit=1000, transform_quantity={"divide_by": 10, "round": "up"})
    assert (
        mrr(sub(items={"si_1": p}), [invoice([line(2000, JAN, FEB, p, qty=11)])], MID_JAN) == 2000
    )


def test_a_multi_currency_price_uses_the_subscriptions_currency() -> None:
    p = price(unit=1000, currency_options={"usd": {"unit_amount": 1000},
                                           "eur": {"unit_amount": 900}})  # fmt: skip
    s = sub(items={"si_1": p}, currency="eur")
    inv = invoice([line(900, JAN, FEB, p)], currency="eur")
    assert mrr(s, [inv], MID_JAN) == 900


def test_an_older_subscription_without_currency_takes_its_prices() -> None:
    s = sub(items={"si_1": price(currency="jpy")})
    del s["currency"]
    assert parse_subscription(s).currency == "jpy"


def test_an_invoice_in_another_currency_than_its_subscription_is_an_error() -> None:
    with pytest.raises(MalformedObject, match="currencies are never mixed"):
        mrr(sub(), [invoice([line(1000, JAN, FEB)], currency="eur")], MID_JAN)


def _without(key: str) -> Any:
    return lambda o: o.pop(key)


@pytest.mark.parametrize(
    ("build", "breaks", "message"),
    [(sub, _without("start_date"), "subscription sub_1: start_date is missing"),
     (sub, lambda o: o.update(start_date="2026-01-01"), "subscription sub_1: start_date must be an integer"),
     (sub, lambda o: o.update(customer=None), "subscription sub_1: customer is missing"),
     (sub, lambda o: o.update(currency="dollars"), "subscription sub_1: currency is not a currency code"),
     (sub, lambda o: o["items"]["data"][0]["price"]["recurring"].update(interval="fortnight"),
      "subscription sub_1: items.data[0].price.recurring.interval must be one of"),
     (sub, lambda o: o.update(discount=discount(coupon("forever", 150), JAN)),
      "subscription sub_1: discount.coupon.percent_off must be between 0 and 100"),
     (sub, _without("id"), "subscription without an id"),
     (lambda: invoice([line(1, JAN, FEB)]), lambda o: o["lines"]["data"][0].pop("period"),
      "lines.data[0].period is missing"),
     (lambda: invoice([line(1, JAN, FEB)]), lambda o: o["lines"]["data"][0].update(quantity=-1),
      "lines.data[0].quantity must not be negative"),
     (lambda: invoice([line(1, JAN, FEB)]), lambda o: o["lines"]["data"][0].update(amount=1.5),
      "lines.data[0].amount must be an integer"),
     (lambda: invoice([line(1, FEB, JAN)]), lambda o: None, "lines.data[0].period.end is before"),
     (lambda: invoice([]), _without("currency"), "currency is missing")],
    ids=["no-start", "start-text", "no-customer", "bad-currency", "bad-interval",
         "percent-150", "no-id", "no-period", "negative-quantity", "float-amount",
         "period-backwards", "invoice-no-currency"],
)  # fmt: skip
def test_malformed_objects_name_the_object_and_the_field(
    build: Any, breaks: Any, message: str
) -> None:
    obj = build()
    breaks(obj)
    parse = (
        parse_subscription if obj.get("object", "subscription") == "subscription" else parse_invoice
    )
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse(obj)


# -- not covered: counted at list price, reported once -----------------------------------------


def test_tiered_prices_count_at_their_tier_table_and_are_reported() -> None:
    tiers = [{"up_to": 5, "unit_amount": 1000, "flat_amount": None},
             {"up_to": None, "unit_amount": 800, "flat_amount": 100}]  # fmt: skip
    graduated = price(unit=None, billing_scheme="tiered", tiers_mode="graduated", tiers=tiers)
    volume = price(unit=None, billing_scheme="tiered", tiers_mode="volume", tiers=tiers)
    unexpanded = price(unit=None, billing_scheme="tiered", tiers_mode="volume")
    cases = [(graduated, 5000 + 4 * 800 + 100), (volume, 9 * 800 + 100), (unexpanded, 7777)]
    for p, expected in cases:
        s = parse_subscription(sub(items={"si_1": p}))
        invs = [parse_invoice(invoice([line(7777, JAN, FEB, p, qty=9)]))]
        assert mrr_at(s, invs, MID_JAN) == expected
        assert unsupported([s], invs) == (Unsupported("sub_1", "a tiered price"),)


def test_customer_level_discounts_are_reported() -> None:
    customer_discount = {"id": "di_c", "object": "discount", "coupon": coupon("forever", 10),
                         "start": JAN, "customer": "cus_1", "subscription": None,
                         "invoice": None}  # fmt: skip
    s = parse_subscription(sub())
    invs = [parse_invoice(invoice([line(1000, JAN, FEB)], discount=customer_discount))]
    assert mrr_at(s, invs, MID_JAN) == 1000
    report = roll_forward([s], invs, through=Month(2026, 1), tz=UTC)
    assert report.unsupported == (Unsupported("sub_1", "a customer discount"),)


def _item_discounted(s: Json) -> None:
    s["items"]["data"][0]["discounts"] = ["di_item"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [(lambda s: s.update(discounts=["di_unexpanded"]), "a discount given only by its id"),
     (lambda s: s.update(discount=discount(coupon("forever", 10), JAN) | {"coupon": "co_id"}),
      "a discount given only by its id"),
     (lambda s: s.update(discounts=[discount(coupon("forever", 10), JAN),
                                    discount(coupon("forever", 20), JAN)]),
      "several forever coupons"),
     (_item_discounted, "a subscription item discount")],
    ids=["discount-id", "coupon-id", "two-forever", "item-discount"],
)  # fmt: skip
def test_discounts_not_covered_count_at_list_price_and_are_reported(
    change: Any, reason: str
) -> None:
    raw = sub()
    change(raw)
    s = parse_subscription(raw)
    invs = [parse_invoice(invoice([line(1000, JAN, FEB)]))]
    assert mrr_at(s, invs, MID_JAN) == 1000
    assert unsupported([s], invs) == (Unsupported("sub_1", reason),)


def test_an_invoice_with_lines_of_two_subscriptions_counts_each_once() -> None:
    p2 = price("price_2", unit=400)
    s1, s2 = sub("sub_1"), sub("sub_2", items={"si_2": p2})
    inv = invoice([line(1000, JAN, FEB, subscription="sub_1"),
                   line(400, JAN, FEB, p2, item="si_2", subscription="sub_2")])  # fmt: skip
    subs, invs = [parse_subscription(s1), parse_subscription(s2)], [parse_invoice(inv)]
    assert [mrr_at(s, invs, MID_JAN) for s in subs] == [1000, 400]
    assert customer_mrr(subs, invs, MID_JAN) == {("cus_1", "usd"): 1400}


def test_a_plain_account_reports_nothing_unsupported() -> None:
    s, invs = monthly("sub_1", "cus_1", "2026-01", 3)
    assert rf([s], invs, "2026-03").unsupported == ()


# -- customers and month ends ---------------------------------------------------------------------


def test_a_customer_with_two_subscriptions_is_one_subscriber() -> None:
    s1, i1 = monthly("sub_1", "cus_t", "2026-01", 4)
    s2, i2 = monthly("sub_2", "cus_t", "2026-01", 2, price("price_2", unit=500), ended=True)
    subs = [parse_subscription(s) for s in (s1, s2)]
    invs = [parse_invoice(i) for i in i1 + i2]
    assert customer_mrr(subs, invs, MID_JAN) == {("cus_t", "usd"): 1500}
    report = rf([s1, s2], i1 + i2, "2026-04")
    assert moves(row(report, "2026-01")) == (0, 1500, 0, 0, 0, 0, 1500)
    assert moves(row(report, "2026-03")) == (1500, 0, 0, 0, 500, 0, 1000)  # contraction
    assert [r.subscribers_end for r in report.rows] == [1, 1, 1, 1]


@pytest.mark.parametrize(
    ("month", "tz", "expected"),
    [("2026-01", UTC, ts(2026, 1, 31, 23, 59, 59)),
     ("2026-01", BERLIN, ts(2026, 1, 31, 22, 59, 59)),
     ("2026-03", BERLIN, ts(2026, 3, 31, 21, 59, 59)),  # summer time from March 29
     ("2024-02", UTC, ts(2024, 2, 29, 23, 59, 59))],
    ids=["utc", "berlin-winter", "berlin-dst-month", "leap-february"],
)  # fmt: skip
def test_month_end_is_the_last_second_in_the_zone(month: str, tz: tzinfo, expected: int) -> None:
    assert month_end(Month.parse(month), tz) == expected


def test_changes_at_the_last_and_first_second_of_a_month() -> None:
    jan_end = month_end(Month(2026, 1), BERLIN)

    def one(sid: str, unit: int, start: int, ended_at: int | None) -> tuple[Json, Json]:
        p = price(f"price_{sid}", unit=unit)
        s = sub(sid, f"cus_{sid}", start, {"si_1": p}, ended_at=ended_at)
        return s, invoice([line(unit, start, start + 90 * DAY, p)], sid=sid, customer=f"cus_{sid}")

    dec = ts(2025, 12, 1, tz=BERLIN)
    pairs = [
        one("w", 10000, dec, jan_end),  # ends on January's last second: not there at its end
        one("z", 1000, dec, jan_end + 1),  # ends on February's first: still there at January's end
        one("x", 100, jan_end, None),  # starts on January's last second: counts in January
        one("y", 10, jan_end + 1, None),  # starts on February's first second: not in January
    ]
    report = rf([s for s, _ in pairs], [i for _, i in pairs], "2026-02", BERLIN)
    assert moves(row(report, "2025-12")) == (0, 11000, 0, 0, 0, 0, 11000)
    assert moves(row(report, "2026-01")) == (11000, 100, 0, 0, 0, 10000, 1100)
    assert moves(row(report, "2026-02")) == (1100, 10, 0, 0, 0, 1000, 110)


# -- the roll-forward -----------------------------------------------------------------------------


def _story() -> tuple[list[Json], list[Json]]:
    """A: steady 1000 from January. B: 2000 from February, upgraded to 3000 at its April
    renewal. C: 1000 from January, downgraded to 500 at its March renewal, cancelled at the end
    of April. D: 1000 in January only, back with a new subscription on April 10 at 1500."""
    a, ia = monthly("sub_a", "cus_a", "2026-01", 6)
    b1, b2 = price("price_b1", unit=2000), price("price_b2", unit=3000)
    bounds = starts("2026-02", 5)
    b = sub("sub_b", "cus_b", bounds[0], {"si_b": b2})
    ib = [invoice([line(pr["unit_amount"], s, e, pr, item="si_b")], sid="sub_b", customer="cus_b")
          for pr, (s, e) in zip([b1, b1, b2, b2, b2], itertools.pairwise(bounds), strict=True)]  # fmt: skip
    c1, c2 = price("price_c1", unit=1000), price("price_c2", unit=500)
    bounds = starts("2026-01", 4)
    c = sub("sub_c", "cus_c", bounds[0], {"si_c": c2}, ended_at=bounds[-1])
    ic = [invoice([line(pr["unit_amount"], s, e, pr, item="si_c")], sid="sub_c", customer="cus_c")
          for pr, (s, e) in zip([c1, c1, c2, c2], itertools.pairwise(bounds), strict=True)]  # fmt: skip
    d1, id1 = monthly("sub_d1", "cus_d", "2026-01", 1, ended=True)
    pd = price("price_d2", unit=1500)
    back = ts(2026, 4, 10)
    d2 = sub("sub_d2", "cus_d", back, {"si_d": pd})
    id2 = [invoice([line(1500, back + k * 30 * DAY, back + (k + 1) * 30 * DAY, pd, item="si_d")],
                   sid="sub_d2", customer="cus_d") for k in range(3)]  # fmt: skip
    return [a, b, c, d1, d2], ia + ib + ic + id1 + id2


def test_the_roll_forward_of_a_story() -> None:
    report = rf(*_story(), "2026-06")
    got = {str(r.month): (moves(r), counts(r)) for r in report.rows}
    assert got == {
        #           start  new  react  exp contr churn   end    subscribers
        "2026-01": ((0, 3000, 0, 0, 0, 0, 3000), (0, 3, 0, 0, 3)),
        "2026-02": ((3000, 2000, 0, 0, 0, 1000, 4000), (3, 1, 0, 1, 3)),
        "2026-03": ((4000, 0, 0, 0, 500, 0, 3500), (3, 0, 0, 0, 3)),
        "2026-04": ((3500, 0, 1500, 1000, 0, 0, 6000), (3, 0, 1, 0, 4)),
        "2026-05": ((6000, 0, 0, 0, 0, 500, 5500), (4, 0, 0, 1, 3)),
        "2026-06": ((5500, 0, 0, 0, 0, 0, 5500), (3, 0, 0, 0, 3)),
    }  # fmt: skip
    feb, mar = row(report, "2026-02"), row(report, "2026-03")
    assert (feb.subscriber_churn_rate, feb.gross_mrr_churn_rate, feb.net_revenue_retention) == (
        Fraction(1, 3), Fraction(1, 3), Fraction(2, 3))  # fmt: skip
    assert (mar.subscriber_churn_rate, mar.gross_mrr_churn_rate, mar.net_revenue_retention) == (
        Fraction(0), Fraction(1, 8), Fraction(7, 8))  # fmt: skip
    assert mar.arpa == Fraction(3500, 3) and mar.arr == 42000


def test_new_against_reactivation_sees_history_before_the_range_shown() -> None:
    # The rows start at the first month with MRR whatever the caller shows; a customer gone
    # since January is reactivated in April even if only April is looked at.
    report = rf(*_story(), "2026-04")
    assert str(report.rows[0].month) == "2026-01"
    assert row(report, "2026-04").reactivated_subscribers == 1


def test_zero_rows_follow_a_full_churn() -> None:
    s, invs = monthly("sub_1", "cus_1", "2026-01", 2, ended=True)
    report = rf([s], invs, "2026-05")
    assert [str(r.month) for r in report.rows] == [
        "2026-01",
        "2026-02",
        "2026-03",
        "2026-04",
        "2026-05",
    ]
    assert moves(row(report, "2026-03")) == (1000, 0, 0, 0, 0, 1000, 0)
    assert moves(row(report, "2026-04")) == (0,) * 7
    r = row(report, "2026-05")
    assert (r.subscriber_churn_rate, r.gross_mrr_churn_rate, r.net_revenue_retention, r.arpa) == (
        None, None, None, None)  # fmt: skip


def test_rows_start_at_the_first_month_with_mrr() -> None:
    # Two months of trial: no MRR at January's or February's end, so March is the first row.
    s, invs = monthly("sub_1", "cus_1", "2026-01", 4)
    s.update(trial_start=JAN, trial_end=MAR)
    report = rf([s], invs, "2026-04")
    assert [str(r.month) for r in report.rows] == ["2026-03", "2026-04"]
    assert row(report, "2026-03").new_subscribers == 1
    assert rf([s], invs, "2026-02").rows == ()


def test_a_churned_customer_who_comes_back_is_a_reactivation() -> None:
    s1, i1 = monthly("sub_1", "cus_1", "2026-01", 1, ended=True)
    s2, i2 = monthly("sub_2", "cus_1", "2026-03", 1, price("price_2", unit=700))
    report = rf([s1, s2], i1 + i2, "2026-03")
    assert moves(row(report, "2026-02")) == (1000, 0, 0, 0, 0, 1000, 0)
    assert moves(row(report, "2026-03")) == (0, 0, 700, 0, 0, 0, 700)
    assert counts(row(report, "2026-03")) == (0, 0, 1, 0, 1)


def test_currencies_are_never_mixed_and_jpy_has_no_decimals() -> None:
    su, iu = monthly("sub_u", "cus_u", "2026-01", 2)
    jpy = price("price_j", unit=10000, interval="year", currency="jpy")
    sj = sub("sub_j", "cus_j", JAN, {"si_1": jpy}, "jpy")
    ij = [
        invoice([line(10000, JAN, ts(2027, 1), jpy)], sid="sub_j", customer="cus_j", currency="jpy")
    ]
    report = rf([su, sj], iu + ij, "2026-02")
    assert [(str(r.month), r.currency) for r in report.rows] == [
        ("2026-01", "jpy"), ("2026-01", "usd"), ("2026-02", "jpy"), ("2026-02", "usd")]  # fmt: skip
    j = row(report, "2026-02", "jpy")
    assert j.mrr_end == Fraction(10000, 12) and j.subscribers_end == 1
    assert shown(j.mrr_end, "jpy") == 833 and shown_major(j.mrr_end, "jpy") == Decimal("833")
    assert row(report, "2026-02", "usd").mrr_end == 1000
    assert shown_major(row(report, "2026-02", "usd").mrr_end, "usd") == Decimal("10.00")


def test_a_customer_moving_from_eur_to_usd_is_new_in_usd() -> None:
    se, ie = monthly("sub_e", "cus_x", "2026-01", 1, currency="eur", ended=True)
    su, iu = monthly("sub_u", "cus_x", "2026-03", 1)
    report = rf([se, su], ie + iu, "2026-03")
    assert moves(row(report, "2026-02", "eur")) == (1000, 0, 0, 0, 0, 1000, 0)
    assert counts(row(report, "2026-03", "usd")) == (0, 1, 0, 0, 1)
    assert [r.month for r in report.rows if r.currency == "usd"] == [Month(2026, 3)]


def test_a_free_subscription_is_not_a_subscriber() -> None:
    sf, i_f = monthly("sub_f", "cus_f", "2026-01", 2)
    sf["discount"] = discount(coupon("forever", 100), JAN, "sub_f")
    sp, ip = monthly("sub_p", "cus_p", "2026-01", 2)
    report = rf([sf, sp], i_f + ip, "2026-02")
    assert [(r.subscribers_end, r.mrr_end) for r in report.rows] == [
        (1, Fraction(1000)),
        (1, Fraction(1000)),
    ]
    assert rf([sf], i_f, "2026-02").rows == ()


def test_a_past_due_open_invoice_counts_and_an_uncollectible_one_churns() -> None:
    s, invs = monthly("sub_1", "cus_1", "2026-01", 3)
    invs[1]["status"] = "open"  # February: payment still being retried
    invs[2]["status"] = "uncollectible"  # March: written off
    report = rf([s], invs, "2026-03")
    assert [int(r.mrr_end) for r in report.rows] == [1000, 1000, 0]
    assert row(report, "2026-03").churned_subscribers == 1


# -- the row itself -------------------------------------------------------------------------------


def _row(**changes: Any) -> MetricsRow:
    base: dict[str, Any] = dict(
        month=Month(2026, 1), currency="usd", mrr_start=Fraction(1000), new=Fraction(500),
        reactivation=Fraction(0), expansion=Fraction(100), contraction=Fraction(50),
        churn=Fraction(200), mrr_end=Fraction(1350), subscribers_start=4, new_subscribers=1,
        reactivated_subscribers=0, churned_subscribers=1, subscribers_end=4,
    )  # fmt: skip
    return MetricsRow(**{**base, **changes})


def test_a_row_whose_movements_do_not_add_up_cannot_exist() -> None:
    assert _row().mrr_end == 1350
    with pytest.raises(MetricsIdentityError, match="mrr_end"):
        _row(mrr_end=Fraction(1351))
    with pytest.raises(MetricsIdentityError, match="subscribers_end"):
        _row(subscribers_end=5)


def test_the_columns_are_the_metrics_tab() -> None:
    assert METRICS_COLUMNS == (
        "month", "currency", "mrr_start", "new", "reactivation", "expansion", "contraction",
        "churn", "mrr_end", "arr", "subscribers_start", "new_subscribers",
        "reactivated_subscribers", "churned_subscribers", "subscribers_end",
        "subscriber_churn_rate", "gross_mrr_churn_rate", "net_revenue_retention", "arpa",
    )  # fmt: skip
    d = _row().as_dict()
    assert list(d) == list(METRICS_COLUMNS)
    assert d["arr"] == 16200 and d["subscriber_churn_rate"] == Fraction(1, 4)
    assert d["gross_mrr_churn_rate"] == Fraction(250, 1000)
    assert d["net_revenue_retention"] == Fraction(850, 1000) and d["arpa"] == Fraction(1350, 4)


@pytest.mark.parametrize(
    ("value", "currency", "expected"),
    [(Fraction(5, 2), "usd", 2), (Fraction(7, 2), "usd", 4), (Fraction(-5, 2), "eur", -2),
     (Fraction(10000, 12), "jpy", 833), (Fraction(2, 3), "kwd", 1), (7, "usd", 7)],
    ids=["half-to-even-down", "half-to-even-up", "negative", "jpy", "kwd", "int"],
)  # fmt: skip
def test_shown_rounds_half_even_to_the_minor_unit(
    value: Fraction, currency: str, expected: int
) -> None:
    assert shown(value, currency) == expected


# -- properties -----------------------------------------------------------------------------------

BASE = ts(2025, 11)
STATUSES = ["paid", "paid", "open", "uncollectible", "void", "draft"]
ZONES = [UTC, BERLIN, ZoneInfo("America/New_York")]


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Json], list[Json]]:
    """Random accounts: subscriptions in three currencies, every interval, quantities and
    prorations, all invoice statuses, trials, cancellations, coupons."""
    subs, invs = [], []
    for k in range(draw(st.integers(1, 6))):
        sid, cus = f"sub_{k}", draw(st.sampled_from(["cus_a", "cus_b", "cus_c"]))
        cur = draw(st.sampled_from(["usd", "eur", "jpy"]))
        unit = draw(st.integers(0, 5000))
        p = price(f"price_{k}", unit, draw(st.sampled_from(["day", "week", "month", "year"])),
                  draw(st.integers(1, 3)), currency=cur)  # fmt: skip
        start = BASE + draw(st.integers(0, 200)) * DAY + draw(st.sampled_from([0, 1, DAY - 1]))
        t = start
        for _ in range(draw(st.integers(0, 6))):
            length = draw(st.integers(1, 100)) * DAY
            q = draw(st.integers(0, 4))
            lines = [line(unit * q, t, t + length, p, q)]
            if draw(st.booleans()):
                change, q2 = t + draw(st.integers(1, length - 1)), draw(st.integers(0, 4))
                lines += [line(-unit * q, change, t + length, p, q, proration=True),
                          line(unit * q2, change, t + length, p, q2, proration=True)]  # fmt: skip
            invs.append(invoice(lines, draw(st.sampled_from(STATUSES)), sid, cus, cur))
            t += length
        extra: Json = {}
        if draw(st.booleans()):
            extra["ended_at"] = draw(st.integers(start, t + 40 * DAY))
        if draw(st.integers(0, 3)) == 0:
            extra.update(trial_start=start, trial_end=start + draw(st.integers(1, 60)) * DAY)
        if draw(st.integers(0, 3)) == 0:
            c = coupon(draw(st.sampled_from(["forever", "once"])), draw(st.integers(0, 100)))
            extra["discount"] = discount(c, start + draw(st.integers(0, 90)) * DAY, sid)
        subs.append(sub(sid, cus, start, {"si_1": p}, cur, **extra))
    return subs, invs


@settings(max_examples=150, deadline=None)
@given(histories(), st.sampled_from(ZONES))
def test_every_row_adds_up_and_matches_the_mrr_at_each_month_end(
    history: tuple[list[Json], list[Json]], tz: tzinfo
) -> None:
    subs = [parse_subscription(s) for s in history[0]]
    invs = [parse_invoice(i) for i in history[1]]
    report = roll_forward(subs, invs, through=Month(2027, 1), tz=tz)
    for currency in {s.currency for s in subs}:
        rows = [r for r in report.rows if r.currency == currency]
        months = [r.month for r in rows]
        assert all(b == a.next() for a, b in itertools.pairwise(months))  # no month skipped
        assert not rows or (rows[0].mrr_end > 0 and rows[-1].month == Month(2027, 1))
        for r in rows:
            assert r.mrr_end == (r.mrr_start + r.new + r.reactivation + r.expansion
                                 - r.contraction - r.churn)  # fmt: skip
            for value, month in ((r.mrr_end, r.month), (r.mrr_start, r.month.previous())):
                at_end = customer_mrr(subs, invs, month_end(month, tz))
                assert value == sum(v for (_, c), v in at_end.items() if c == currency)
            at_end = customer_mrr(subs, invs, month_end(r.month, tz))
            assert r.subscribers_end == sum(
                1 for (_, c), v in at_end.items() if c == currency and v > 0
            )
            assert min(r.new, r.reactivation, r.expansion, r.contraction, r.churn) >= 0


@st.composite
def splittable(draw: st.DrawFn) -> tuple[list[Json], list[Json], list[Json], list[Json]]:
    """One customer's subscription, and the same split in two: every line's quantity shared
    between the two halves the same way within an invoice, so each half is a real history."""
    unit = draw(st.integers(1, 3000))
    p = price("price_1", unit, draw(st.sampled_from(["day", "week", "month", "year"])),
              draw(st.integers(1, 3)))  # fmt: skip
    start = BASE + draw(st.integers(0, 40)) * DAY
    extra: Json = {}
    if draw(st.booleans()):
        extra["discount"] = discount(coupon(draw(st.sampled_from(["forever", "once"])),
                                            draw(st.integers(0, 100))), start + 20 * DAY)  # fmt: skip
    if draw(st.booleans()):
        extra.update(trial_start=start, trial_end=start + draw(st.integers(1, 40)) * DAY)
    whole, one, two = [], [], []
    t = start
    for _ in range(draw(st.integers(1, 6))):
        length = draw(st.integers(2, 70)) * DAY
        status = draw(st.sampled_from(STATUSES))
        q = draw(st.integers(0, 6))
        a = draw(st.integers(0, q))
        pair = draw(st.booleans())
        change, q2 = t + draw(st.integers(1, length - 1)), draw(st.integers(0, 6))
        b = draw(st.integers(0, q2))

        def lines(qty: int, qty2: int, t: int = t, length: int = length, change: int = change,
                  pair: bool = pair) -> list[Json]:  # fmt: skip
            out = [line(unit * qty, t, t + length, p, qty)]
            if pair:
                out += [line(-unit * qty, change, t + length, p, qty, proration=True),
                        line(unit * qty2, change, t + length, p, qty2, proration=True)]  # fmt: skip
            return out

        whole.append(invoice(lines(q, q2), status, "sub_w"))
        one.append(invoice(lines(a, b), status, "sub_1"))
        two.append(invoice(lines(q - a, q2 - b), status, "sub_2"))
        t += length
    if draw(st.booleans()):
        extra["ended_at"] = draw(st.integers(start, t))
    subs_whole = [sub("sub_w", "cus_1", start, {"si_1": p}, **extra)]
    subs_split = [sub("sub_1", "cus_1", start, {"si_1": p}, **extra),
                  sub("sub_2", "cus_1", start, {"si_1": p}, **extra)]  # fmt: skip
    return subs_whole, whole, subs_split, one + two


@settings(max_examples=150, deadline=None)
@given(splittable(), st.lists(st.integers(0, 500 * DAY), min_size=1, max_size=8))
def test_a_customers_mrr_does_not_depend_on_how_items_are_split_into_subscriptions(
    case: tuple[list[Json], list[Json], list[Json], list[Json]], offsets: list[int]
) -> None:
    subs_whole, inv_whole, subs_split, inv_split = case
    a = ([parse_subscription(s) for s in subs_whole], [parse_invoice(i) for i in inv_whole])
    b = ([parse_subscription(s) for s in subs_split], [parse_invoice(i) for i in inv_split])
    for off in offsets:
        assert customer_mrr(*a, BASE + off) == customer_mrr(*b, BASE + off)
    assert roll_forward(*a, through=Month(2027, 3), tz=UTC) == roll_forward(
        *b, through=Month(2027, 3), tz=UTC
    )


PER_YEAR = {"month": 12, "year": 1, "week": 52, "day": 365}


@given(st.sampled_from(sorted(PER_YEAR)), st.integers(1, 12), st.integers(0, 10**7),
       st.integers(0, 50))  # fmt: skip
def test_normalisation_makes_a_year_of_any_interval_equal(
    interval: str, count: int, unit: int, qty: int
) -> None:
    def one(interval: str, count: int, unit: int) -> Fraction:
        p = price(unit=unit, interval=interval, count=count)
        inv = invoice([line(unit * qty, JAN, JAN + 9000 * DAY, p, qty)])
        return mrr(sub(items={"si_1": p}), [inv], JAN)

    # Twelve months of MRR are what the price bills in a year...
    assert 12 * one(interval, count, unit) == Fraction(unit * qty * PER_YEAR[interval], count)
    # ...so 12 monthly payments equal one yearly of 12x, 52 weekly one yearly of 52x, etc.
    assert one(interval, 1, unit) == one("year", 1, unit * PER_YEAR[interval])
    assert one(interval, count, unit * count) == one(interval, 1, unit)
