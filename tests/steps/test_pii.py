"""pii: e-mail and public IPv4 anonymisation as datatrove's PIIFormatter (FineWeb, FineWeb-2); tricky cases."""

from __future__ import annotations

import pytest

from engine.batch import make_batch
from engine.steps.pii import EMAIL_REPLACEMENTS, IP_REPLACEMENTS, Pii
from tests.steps.property_checks import check_step_properties

E1, E2 = EMAIL_REPLACEMENTS
IP1, IP2, IP3 = IP_REPLACEMENTS[:3]


def run(texts: list[str | None], **params: object) -> tuple[list[str | None], dict[str, list[float]]]:
    out, verdict = Pii(**params)(make_batch({"text": texts}))  # type: ignore[arg-type]
    assert verdict.keep.all()  # pii never drops
    return out["text"].to_pylist(), {k: list(v) for k, v in verdict.scores.items()}


def test_emails_replaced_in_turn_within_each_document() -> None:
    texts, scores = run(["write to john.doe@gmail.com or jane+tag@mail.co.uk, then bob@x.org", "a@b.io"])
    assert texts == [f"write to {E1} or {E2}, then {E1}", E1]
    assert scores["emails"] == [3.0, 1.0]


def test_public_ips_replaced_private_ones_kept() -> None:
    text = "dns 8.8.8.8, router 192.168.1.1, loopback 127.0.0.1, lan 10.0.0.7, cloud 1.1.1.1"
    texts, scores = run([text])
    assert texts == [f"dns {IP1}, router 192.168.1.1, loopback 127.0.0.1, lan 10.0.0.7, cloud {IP2}"]
    assert scores["ips"] == [2.0]
    everything, _ = run([text], only_remove_public_ips=False)
    assert "192.168.1.1" not in everything[0]
    assert "127.0.0.1" not in everything[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("release 1.2.3 and 3.11.4", "release 1.2.3 and 3.11.4"),  # three-part versions: no IPv4
        ("version 10.2.3.4", "version 10.2.3.4"),  # four parts but private (10/8): kept
        ("version 2.4.10.1", f"version {IP1}"),  # four parts and public: replaced, as in the reference
        ("8.8.8.8.8", f"{IP1}.8"),  # a longer dotted number: its first four parts are an address
        ("999.1.1.1", f"9{IP1}"),  # 999 is no octet, but "99.1.1.1" inside it is a public address
    ],
)
def test_dotted_numbers(text: str, expected: str) -> None:
    assert run([text])[0] == [expected]


def test_ipv6_left_alone_by_default_and_optional() -> None:
    text = "google 2001:4860:4860::8888, local fe80::1, mapped ::ffff:8.8.8.8, time 12:30:45"
    default, _ = run([text])
    assert default == [f"google 2001:4860:4860::8888, local fe80::1, mapped ::ffff:{IP1}, time 12:30:45"]
    with_v6, scores = run([text], remove_ipv6=True)
    # the link-local address is kept; the mapped one is public once its IPv4 part is replaced: both passes count
    assert with_v6 == ["google 2001:db8::1, local fe80::1, mapped 2001:db8::1, time 12:30:45"]
    assert scores["ips"] == [3.0]


def test_emails_in_urls() -> None:
    texts, _ = run(["mailto:jane@mail.com", "https://user:secret@host.example.com/path", "https://x.com/@handle"])
    assert texts == [f"mailto:{E1}", f"https://user:{E1}/path", "https://x.com/@handle"]


def test_untouched_documents_keep_their_bytes_and_nulls() -> None:
    texts, scores = run(["no addresses here", None, "", "@ alone and 1.2.3"])
    assert texts == ["no addresses here", None, "", "@ alone and 1.2.3"]
    assert scores == {"emails": [0.0] * 4, "ips": [0.0] * 4}


def test_switches_and_custom_replacements() -> None:
    text = "a@b.com 8.8.8.8"
    assert run([text], remove_emails=False)[0] == [f"a@b.com {IP1}"]
    assert run([text], remove_ips=False)[0] == [f"{E1} 8.8.8.8"]
    assert run([text], email_replacement=("<email>",), ip_replacement=("<ip>",))[0] == ["<email> <ip>"]


def test_pii_properties() -> None:
    check_step_properties(Pii(remove_ipv6=True))
