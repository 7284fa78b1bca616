"""Which keys the default MONITOR_REDACT_KEYS hides: secret names, spelled
any way a payload may spell them, and not the words that merely contain a
short one ("shipping" holds "pin")."""

import pytest

from acme_jobs.kit import settings
from acme_jobs.kit.redaction import REDACTED, redact, words

DEFAULTS = settings.MONITOR_REDACT_KEYS


def hidden(key: str) -> bool:
    return redact({key: "value"}, DEFAULTS)[key] == REDACTED


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "PassWord",
        "PASSWORD",
        "\uff30\uff41\uff53\uff53\uff37\uff4f\uff52\uff44",  # "PassWord" in full-width letters
        "pass",
        "db_pass",
        "PA\u1e9e",  # a capital sharp s: casefolds to "pass"
        "pass\u200bword",  # a zero-width space inside
        "pwd",
        "passphrase",
        "credentials",
        "aws_credential",
        "jwt",
        "jwtToken",
        "otp",
        "otp_code",
        "pin",
        "userPin",
        "PIN_CODE",
        "pin2",
        "dsn",
        "SENTRY_DSN",
        "database_url",
        "DATABASE-URL",
        "connection_string",
        "ConnectionString",
        "access_key",
        "aws-access-key-id",
        "private_key",
        "privateKey",
        "signature",
        "webhookSignature",
        "auth",
        "X-Auth",
        "bearer",
        "bearer_token",
        "api_key",
        "X-Api-Key",
    ],
)
def test_secret_names_are_hidden_however_they_are_spelled(key):
    assert hidden(key)


@pytest.mark.parametrize(
    "key", ["shipping", "spinner", "author", "authority", "passenger", "compass", "nome", "idade"]
)
def test_words_that_only_contain_a_short_name_are_shown(key):
    assert not hidden(key)


def test_nested_values_are_hidden_too():
    shown = redact({"outer": [{"Pin": 1234, "city": "Recife"}]}, DEFAULTS)

    assert shown == {"outer": [{"Pin": REDACTED, "city": "Recife"}]}


def test_a_configured_fragment_is_folded_like_the_keys():
    full_width_nome = "\uff2e\uff4f\uff4d\uff45"

    assert redact({full_width_nome: "Ana"}, ["NOME"]) == {full_width_nome: REDACTED}


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("userPinCode", ["user", "pin", "code"]),
        ("PINCode", ["pin", "code"]),
        ("X-Api-Key", ["x", "api", "key"]),
        ("otp2fa", ["otp", "2", "fa"]),
    ],
)
def test_keys_split_into_words_at_separators_humps_and_digits(key, expected):
    assert words(key) == expected
