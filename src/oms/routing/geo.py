"""Offline destination geocoding for routing: address -> a point good enough for distance bands.

Nothing is fetched at runtime. Three small data files ship in ``oms/routing/data/`` (built by
``data/build_geo_data.py``; sources and licences in ``data/NOTICE.md``), each loaded lazily on
first use and cached for the life of the process:

* ``countries.csv`` — a point for every ISO 3166-1 alpha-2 code (250): the population-weighted
  centroid of the country's GeoNames places, which sits where people (and so orders) are rather
  than at the geometric middle. Four uninhabited territories (AQ, BV, HM, UM) are hand-placed.
* ``postal_prefixes.csv.gz`` — the median point of the postal codes sharing a 2- or 3-character
  prefix, for ~107 countries (e.g. US ZIP3, CA FSA, GB postcode areas, DE/FR/IT/ES/NL/PL/AT/CH
  /SE/NO/DK/FI/BE/PT/AU/NZ/BR/MX/JP…). Codes that came without coordinates were placed at the
  GeoNames place of the same locality name, so a prefix can be off by tens of kilometres, and
  some prefixes are missing (then the 2-character prefix or the city is used). Not covered at
  all: e.g. IE (Eircode), RU, KR, SG, IL, SA, AE, EG and most of Africa.
* ``cities.csv.gz`` — GeoNames places of 5,000+ people by name (plus Latin-script alternate
  names of places over 100,000: "München", "Milano", "Wien"), matched case-, accent- and
  punctuation-insensitively; the most populous place wins a name clash within a country.

Accuracy is what routing needs, not what a map needs: the router compares 400 km bands.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import unicodedata
from enum import StrEnum
from functools import cache
from importlib import resources

from oms.routing.domain import GeoPoint

__all__ = [
    "GeoSource",
    "city_point",
    "country_centroid",
    "normalise_place_name",
    "normalise_postal_code",
    "postal_code_point",
    "preload",
    "resolve_destination",
]

_AREA_COUNTRIES = frozenset({"GB", "IM", "JE", "GG"})  # postcode areas: the outward letters
_NON_ALNUM = re.compile(r"[^0-9A-Z]")
_NON_WORD = re.compile(r"[\W_]+")
_LEADING_LETTERS = re.compile(r"[A-Z]+")
_CITY_SPLIT = re.compile(r"[-,/(]")


class GeoSource(StrEnum):
    """Where a destination point came from, best first."""

    ADDRESS = "address"
    POSTAL_CODE = "postal_code"
    CITY = "city"
    COUNTRY_CENTROID = "country_centroid"
    UNKNOWN = "unknown"


def normalise_postal_code(country: str, postal_code: str) -> str:
    """Upper-case alphanumerics only; a leading country code before digits is dropped
    (``"MD-2001"`` -> ``"2001"``, ``"sw1a 1aa"`` -> ``"SW1A1AA"``)."""
    code = _NON_ALNUM.sub("", postal_code.upper())
    cc = country.upper()
    if len(code) > 2 and code.startswith(cc) and code[2].isdigit():
        code = code[2:]
    return code


def normalise_place_name(name: str) -> str:
    """Case-folded, accents stripped, letters/digits of any script, single spaces."""
    s = unicodedata.normalize("NFKD", name.casefold())
    s = "".join(ch for ch in s if not unicodedata.combining(ch)).replace("ß", "ss")
    return " ".join(_NON_WORD.sub(" ", s).split())


def _data(name: str) -> bytes:
    return resources.files("oms.routing").joinpath("data", name).read_bytes()


@cache
def _countries() -> dict[str, GeoPoint]:
    out: dict[str, GeoPoint] = {}
    reader = csv.DictReader(io.StringIO(_data("countries.csv").decode()))
    for row in reader:
        out[row["country"]] = GeoPoint(float(row["lat"]), float(row["lon"]))
    return out


@cache
def _postal_prefixes() -> dict[tuple[str, str], GeoPoint]:
    out: dict[tuple[str, str], GeoPoint] = {}
    text = gzip.decompress(_data("postal_prefixes.csv.gz")).decode()
    for row in csv.DictReader(io.StringIO(text)):
        out[(row["country"], row["prefix"])] = GeoPoint(float(row["lat"]), float(row["lon"]))
    return out


@cache
def _city_blobs() -> dict[str, str]:
    """The city table as one text blob per country (parsed per country on demand)."""
    text = gzip.decompress(_data("cities.csv.gz")).decode()
    lines: dict[str, list[str]] = {}
    for line in text.splitlines()[1:]:
        cc, _, rest = line.partition(",")
        lines.setdefault(cc, []).append(rest)
    return {cc: "\n".join(rows) for cc, rows in lines.items()}


@cache
def _cities(country: str) -> dict[str, GeoPoint]:
    out: dict[str, GeoPoint] = {}
    blob = _city_blobs().get(country)
    if blob:
        for name, lat, lon in csv.reader(io.StringIO(blob)):
            out[name] = GeoPoint(float(lat), float(lon))
    return out


def country_centroid(country: str) -> GeoPoint | None:
    """The country's population-weighted centroid, or None for an unknown code."""
    return _countries().get(country.strip().upper())


def postal_code_point(country: str, postal_code: str) -> GeoPoint | None:
    """The centroid of the postal code's 3-, else 2-character prefix (GB-style: its area)."""
    cc = country.strip().upper()
    code = normalise_postal_code(cc, postal_code)
    if not code:
        return None
    table = _postal_prefixes()
    if cc in _AREA_COUNTRIES:
        letters = _LEADING_LETTERS.match(code)
        if letters is None:
            return None
        area = letters.group(0)[:2]
        return table.get((cc, "@" + area)) or table.get((cc, "@" + area[:1]))
    for n in (3, 2):
        if len(code) >= n:
            point = table.get((cc, code[:n]))
            if point is not None:
                return point
    return None


def city_point(country: str, city: str) -> GeoPoint | None:
    """The most populous GeoNames place of that name in the country (5,000+ people)."""
    cc = country.strip().upper()
    table = _cities(cc)
    if not table:
        return None
    key = normalise_place_name(city)
    point = table.get(key)
    if point is None and key:
        first = normalise_place_name(_CITY_SPLIT.split(city, maxsplit=1)[0])
        if first and first != key:
            point = table.get(first)  # "Köln-Ehrenfeld", "Paris (8e)", "Berlin, Mitte"
    return point


def resolve_destination(
    country: str,
    postal_code: str | None,
    city: str | None,
    latitude: float | None,
    longitude: float | None,
) -> tuple[GeoPoint | None, GeoSource]:
    """The best offline point for an address and where it came from.

    Order: the address's own coordinates (both given and in range), the postal-code prefix,
    the city name, the country centroid; else ``(None, "unknown")``.
    """
    if latitude is not None and longitude is not None:
        if -90.0 <= latitude <= 90.0 and -180.0 <= longitude <= 180.0:
            return GeoPoint(float(latitude), float(longitude)), GeoSource.ADDRESS
    cc = (country or "").strip().upper()
    if len(cc) != 2:
        return None, GeoSource.UNKNOWN
    if postal_code and postal_code.strip():
        point = postal_code_point(cc, postal_code)
        if point is not None:
            return point, GeoSource.POSTAL_CODE
    if city and city.strip():
        point = city_point(cc, city)
        if point is not None:
            return point, GeoSource.CITY
    point = country_centroid(cc)
    if point is not None:
        return point, GeoSource.COUNTRY_CENTROID
    return None, GeoSource.UNKNOWN


def preload() -> None:
    """Load every table now (e.g. at application start) instead of on the first lookup."""
    _countries()
    _postal_prefixes()
    _city_blobs()
