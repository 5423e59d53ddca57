"""Numeric columns of every width, sign and byte order, and string columns of either byte
order or split in chunks, read as the same values as lists of Python objects."""

from __future__ import annotations

from typing import Any

import pytest

import outguard
from conftest import NOW

MAILS = ["a@contoso.com", "x@evil.example", "jörg@bücher.example"]
TIMES = [NOW, NOW + 60, NOW + 120]
RCPT = [1, 2, 7]
AUTH: list[str | None] = [None, "w@bücher.example", "z@trial.example"]


def batch(e: outguard.Engine, **cols: Any) -> dict[str, list[Any]]:
    now = cols.pop("now", TIMES)
    mail_from = cols.pop("mail_from", MAILS)
    return e.check_batch(now, mail_from, tenant="contoso", **cols).to_dict()


def test_numpy_numbers_of_every_width_and_byte_order(engine: outguard.Engine) -> None:
    np = pytest.importorskip("numpy")
    want = batch(engine, recipients=RCPT)
    for order in "<>":
        for kind in "iu":
            for size in (1, 2, 4, 8):
                dtype = f"{order}{kind}{size}"
                assert batch(engine, recipients=np.array(RCPT, dtype=dtype)) == want, dtype
                if size == 8:
                    assert batch(engine, now=np.array(TIMES, dtype=dtype)) == want, dtype
            if kind == "i":
                for size in (1, 2, 4, 8):
                    with pytest.raises(ValueError, match=r"recipients\[1\]: expected a count .*, got -3$"):
                        batch(engine, recipients=np.array([1, -3, 2], dtype=f"{order}i{size}"))
        assert batch(engine, now=np.array(TIMES, dtype=f"{order}f8")) == want, order
        with pytest.raises(ValueError, match=r"recipients\[0\]: expected a count .*, got 1\.5$"):
            batch(engine, recipients=np.array([1.5, 2, 7], dtype=f"{order}f4"))


def test_arrow_integers_of_every_width(engine: outguard.Engine) -> None:
    pa = pytest.importorskip("pyarrow")
    want = batch(engine, recipients=RCPT)
    for typ in (pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()):
        assert batch(engine, recipients=pa.array(RCPT, typ)) == want, typ
    for typ in (pa.int8(), pa.int16(), pa.int32(), pa.int64()):
        with pytest.raises(ValueError, match=r"recipients\[1\]: expected a count .*, got -3$"):
            batch(engine, recipients=pa.array([1, -3, 2], typ))


def test_numpy_strings_of_either_byte_order(engine: outguard.Engine) -> None:
    np = pytest.importorskip("numpy")
    want = batch(engine, auth_user=AUTH)
    auth = ["" if a is None else a for a in AUTH]
    for order in "<>":
        got = batch(engine, mail_from=np.array(MAILS, dtype=f"{order}U24"), auth_user=np.array(auth, dtype=f"{order}U24"))
        assert got == want, order
    ascii_mails = [m for m in MAILS if m.isascii()]
    assert batch(engine, now=TIMES[:2], mail_from=np.array(ascii_mails, dtype="S")) == batch(engine, now=TIMES[:2], mail_from=ascii_mails)


def test_arrow_text_in_chunks_with_non_ascii_values(engine: outguard.Engine) -> None:
    pa = pytest.importorskip("pyarrow")
    want = batch(engine, auth_user=AUTH)
    got = batch(
        engine,
        mail_from=pa.chunked_array([MAILS[:2], MAILS[2:]]),
        auth_user=pa.chunked_array([AUTH[:1], AUTH[1:2], AUTH[2:]], pa.string()),
    )
    assert got == want
