"""Offline destination geocoding: sources, fallbacks, and that every country has a point."""

from __future__ import annotations

import pytest

from oms.routing.domain import GeoPoint, haversine_km
from oms.routing.geo import (
    GeoSource,
    city_point,
    country_centroid,
    normalise_place_name,
    normalise_postal_code,
    postal_code_point,
    resolve_destination,
)

# (country, postal code, true location, tolerance km): city-centre codes of big cities
POSTAL = [
    ("US", "10001", GeoPoint(40.750, -73.997), 40),
    ("US", "94103", GeoPoint(37.773, -122.411), 40),
    ("CA", "M5V 3L9", GeoPoint(43.642, -79.387), 40),
    ("GB", "SW1A 1AA", GeoPoint(51.501, -0.142), 40),
    ("GB", "M1 1AE", GeoPoint(53.481, -2.237), 40),
    ("DE", "10115", GeoPoint(52.532, 13.385), 40),
    ("DE", "80331", GeoPoint(48.137, 11.575), 40),
    ("FR", "75008", GeoPoint(48.873, 2.312), 40),
    ("FR", "13001", GeoPoint(43.300, 5.383), 60),
    ("IT", "20121", GeoPoint(45.471, 9.187), 40),
    ("ES", "28001", GeoPoint(40.424, -3.683), 60),
    ("NL", "1011 AB", GeoPoint(52.374, 4.900), 40),
    ("PL", "00-950", GeoPoint(52.229, 21.012), 40),
    ("AT", "1010", GeoPoint(48.208, 16.373), 40),
    ("SE", "111 22", GeoPoint(59.332, 18.064), 40),
    ("AU", "2000", GeoPoint(-33.869, 151.209), 40),
    ("BR", "01310-100", GeoPoint(-23.561, -46.656), 60),
    ("MD", "MD-2001", GeoPoint(47.010, 28.863), 40),
]


@pytest.mark.parametrize(("country", "code", "truth", "km"), POSTAL)
def test_postal_code_prefixes_land_near_the_truth(
    country: str, code: str, truth: GeoPoint, km: float
) -> None:
    point, source = resolve_destination(country, code, None, None, None)
    assert source == GeoSource.POSTAL_CODE
    assert point is not None
    assert haversine_km(point, truth) < km


def test_address_coordinates_win() -> None:
    point, source = resolve_destination("DE", "10115", "Berlin", 48.1, 11.5)
    assert (point, source) == (GeoPoint(48.1, 11.5), GeoSource.ADDRESS)
    assert source == "address"  # a plain string for callers


def test_out_of_range_or_half_coordinates_are_ignored() -> None:
    assert resolve_destination("DE", "10115", None, 95.0, 11.5)[1] is GeoSource.POSTAL_CODE
    assert resolve_destination("DE", "10115", None, 48.1, None)[1] is GeoSource.POSTAL_CODE


@pytest.mark.parametrize(
    ("country", "city", "truth"),
    [
        ("DE", "München", GeoPoint(48.137, 11.575)),
        ("DE", "munich", GeoPoint(48.137, 11.575)),
        ("de", "KÖLN-Ehrenfeld", GeoPoint(50.938, 6.960)),
        ("IT", "Milano", GeoPoint(45.464, 9.190)),
        ("AT", "Wien", GeoPoint(48.208, 16.373)),
        ("IE", "Dublin", GeoPoint(53.350, -6.260)),
        ("US", "San Francisco", GeoPoint(37.775, -122.419)),
        ("FR", "Saint-Étienne", GeoPoint(45.434, 4.390)),
    ],
)
def test_city_names(country: str, city: str, truth: GeoPoint) -> None:
    point, source = resolve_destination(country, None, city, None, None)
    assert source is GeoSource.CITY
    assert point is not None
    assert haversine_km(point, truth) < 25


def test_unknown_postal_code_falls_back_to_city_then_country() -> None:
    point, source = resolve_destination("IE", "D02 X285", "Dublin", None, None)
    assert source is GeoSource.CITY  # no Eircode data
    point, source = resolve_destination("IE", "D02 X285", "Nowhereville", None, None)
    assert source is GeoSource.COUNTRY_CENTROID
    assert point == country_centroid("IE")


def test_unknown_country() -> None:
    assert resolve_destination("XX", None, None, None, None) == (None, GeoSource.UNKNOWN)
    assert resolve_destination("", "10115", "Berlin", None, None) == (None, GeoSource.UNKNOWN)


def test_every_iso_country_has_a_centroid() -> None:
    pycountry = pytest.importorskip("pycountry")
    missing = [c.alpha_2 for c in pycountry.countries if country_centroid(c.alpha_2) is None]
    assert missing == []


def test_country_centroids_are_where_people_live() -> None:
    us, fr, fj = country_centroid("US"), country_centroid("FR"), country_centroid("fj")
    assert us is not None and fr is not None and fj is not None
    assert haversine_km(us, GeoPoint(38.5, -92.0)) < 400  # population centre: Missouri
    assert haversine_km(fr, GeoPoint(47.5, 2.5)) < 250  # metropolitan France
    assert abs(fj.longitude) > 170  # across the antimeridian, not in the Atlantic


def test_normalisers() -> None:
    assert normalise_postal_code("gb", "sw1a 1aa") == "SW1A1AA"
    assert normalise_postal_code("MD", "MD-2001") == "2001"
    assert normalise_postal_code("US", "94103-1234") == "941031234"
    assert normalise_place_name("  Saint-Étienne ") == "saint etienne"
    assert normalise_place_name("Straße") == "strasse"


def test_direct_lookups() -> None:
    assert postal_code_point("US", "") is None
    assert postal_code_point("ZZ", "12345") is None
    assert city_point("ZZ", "Berlin") is None
    assert city_point("DE", "") is None
