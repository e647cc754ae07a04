"""The checks a number of each kind passes: the resident ID's check character and date, Luhn and
UnionPay's prefix for bank cards, the allocated mobile prefixes and landline area codes for phones, and the
shapes a number keeps when a recognizer mishears one of its digits."""

from __future__ import annotations

import datetime as dt
import re

# a company's or an authority's phone number, not a person's: 400/800 hotlines, 95xxx and 1xxxx short numbers
_SERVICE_NUMBER = re.compile(r"(?:400|800)\d{7}|95\d{3,4}|1[012]\d{3}")
_MOBILE = re.compile(r"1(?:3\d|4[5-9]|5[0-35-9]|6[2567]|7[0-8]|8\d|9[0-35-9])\d{8}")
_LANDLINE = re.compile(r"0(?:[12]\d|[3-9]\d{2})\d{7,8}")
_PROVINCES = {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52, 53,
              54, 61, 62, 63, 64, 65, 71, 81, 82}
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_check_char(first17: str) -> str:
    """The resident ID's 18th character for its first 17 digits."""
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS)) % 11]


def valid_id_card(number: str) -> bool:
    """18 characters: a province code, a birth date between 1900 and today, and the check character."""
    if not re.fullmatch(r"\d{17}[\dX]", number) or int(number[:2]) not in _PROVINCES:
        return False
    try:
        born = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    return dt.date(1900, 1, 1) <= born <= dt.date.today() and id_check_char(number[:17]) == number[17]


def id_card_shaped(number: str) -> bool:
    """15 to 19 characters, digits and a last X maybe (an ID card's 18, a digit lost or heard twice), with a
    province code first and a year of birth (19xx, 200x-202x) where an ID card has it, give or take that
    digit: misheard digits break the check character and the date; about 1 random number in 75 of these
    lengths has both."""
    return (15 <= len(number) <= 19 and re.fullmatch(r"\d+X?", number) is not None
            and int(number[:2]) in _PROVINCES and any(re.match(r"19\d\d|20[0-2]\d", number[at:]) for at in (5, 6, 7)))


def luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def valid_bank_card(number: str) -> bool:
    return 16 <= len(number) <= 19 and number.isdigit() and luhn_ok(number)


def unionpay_shaped(number: str) -> bool:
    """16 to 19 digits after UnionPay's 62, which nearly every card issued in China carries, Luhn or not:
    one misheard digit breaks Luhn (1 random number in 100 starts 62)."""
    return 16 <= len(number) <= 19 and number.isdigit() and number.startswith("62")


def valid_phone(number: str) -> bool:
    """A mainland mobile number (86 before it allowed) or a landline with its area code."""
    if len(number) == 13 and number.startswith("86"):
        number = number[2:]
    return bool(_MOBILE.fullmatch(number) or _LANDLINE.fullmatch(number))


def mobile_prefixed(digits: str) -> bool:
    """Whether ``digits`` start with an allocated mobile prefix (13x-19x)."""
    return _MOBILE.match(digits[:3] + "0" * 8) is not None


def service_number(digits: str) -> bool:
    """A company's or an authority's number, not a person's: a 400/800 hotline, a 95xxx or 1xxxx short number."""
    return _SERVICE_NUMBER.fullmatch(digits) is not None
