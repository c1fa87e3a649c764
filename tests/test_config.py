from pathlib import Path

import pytest

from bot.config import Secret, mask, resolve
from bot.errors import ConfigError

GOOD = "sk_test_" + "a1B2c3D4e5F6g7H8"


def test_flag_beats_env_beats_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "# comment\nexport REPORT_TIMEZONE='Europe/Berlin'\nCOMPANY_NAME=\"Acme, Inc.\"\n"
        f"STRIPE_SECRET_KEY={GOOD}\nDATA_DIR=data  # inline comment\n"
    )
    s = resolve(environ={}, cwd=tmp_path)
    assert s.timezone == "Europe/Berlin"
    assert s.company_name == "Acme, Inc."
    assert s.data_dir == tmp_path / "data"
    s = resolve(environ={"REPORT_TIMEZONE": "Asia/Tokyo"}, cwd=tmp_path)
    assert s.timezone == "Asia/Tokyo"
    s = resolve(
        environ={"REPORT_TIMEZONE": "Asia/Tokyo"},
        cwd=tmp_path,
        overrides={"REPORT_TIMEZONE": "UTC"},
    )
    assert s.timezone == "UTC"


@pytest.mark.parametrize(
    ("env", "match"),
    [({}, "STRIPE_SECRET_KEY is not set"),
     ({"STRIPE_SECRET_KEY": "pk_test_a1B2c3D4e5F6g7H8"}, "publishable key"),
     ({"STRIPE_SECRET_KEY": "sk_test_abc"}, "not a Stripe secret"),
     ({"STRIPE_SECRET_KEY": "hello"}, "not a Stripe secret"),
     ({"STRIPE_SECRET_KEY": GOOD, "STRIPE_MODE": "live"}, "STRIPE_MODE=live but"),
     ({"STRIPE_SECRET_KEY": GOOD, "STRIPE_MODE": "prod"}, "must be 'live' or 'test'"),
     ({"STRIPE_SECRET_KEY": GOOD, "REPORT_TIMEZONE": "Mars/Base"}, "REPORT_TIMEZONE"),
     ({"STRIPE_SECRET_KEY": GOOD, "STRIPE_MAX_RPS": "fast"}, "STRIPE_MAX_RPS"),
     ({"STRIPE_SECRET_KEY": GOOD, "STRIPE_API_BASE": "localhost:1"}, "STRIPE_API_BASE")],
    ids=["missing", "publishable", "truncated", "garbage", "mode-mismatch", "bad-mode",
         "bad-zone", "bad-rps", "bad-url"],
)  # fmt: skip
def test_bad_settings(tmp_path: Path, env: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        resolve(environ=env, cwd=tmp_path)
    assert info.value.exit_code == 78
    key = env.get("STRIPE_SECRET_KEY", "")
    if len(key) > 12:
        assert key not in str(info.value)


def test_key_mode_and_masking(tmp_path: Path) -> None:
    s = resolve(environ={"STRIPE_SECRET_KEY": GOOD, "STRIPE_MODE": "test"}, cwd=tmp_path)
    assert s.key_mode == "test"
    assert s.stripe_key is not None
    assert GOOD not in repr(s) and GOOD not in str(s.stripe_key) and GOOD not in f"{s}"
    assert s.stripe_key.masked() == "sk_test_…g7H8"
    assert mask("re_123456789abc") == "re_…9abc"
    assert Secret("x").reveal() == "x"


def test_lists_split(tmp_path: Path) -> None:
    s = resolve(
        environ={"STRIPE_SECRET_KEY": GOOD, "INVESTOR_EMAILS": " a@x.com, b@y.org ,,"}, cwd=tmp_path
    )
    assert s.investor_emails == ("a@x.com", "b@y.org")


def test_malformed_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("this is not an assignment\n")
    with pytest.raises(ConfigError, match=r"\.env:1"):
        resolve(environ={"STRIPE_SECRET_KEY": GOOD}, cwd=tmp_path)
