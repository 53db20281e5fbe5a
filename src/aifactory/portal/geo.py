"""The overview map: the shipped Europe SVG, countries coloured by role, factory markers.

``static/europe.svg`` holds rough country outlines (ids are ISO 3166 codes, projected with the
constants below). The page inlines a copy built with ElementTree, which escapes every name and
title it writes, so registry text never reaches the page as markup.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from functools import cache
from importlib.resources import files

from markupsafe import Markup

from aifactory.services.views import FactoryView

SVG = "http://www.w3.org/2000/svg"
LON0, LAT_TOP, SCALE_Y = -25.0, 72.0, 10.0
SCALE_X = SCALE_Y * math.cos(math.radians(50))
#: Where the default factories are (longitude, latitude); others sit at their country's centre.
CITIES: dict[str, tuple[float, float]] = {
    "Barcelona": (2.17, 41.39),
    "Bologna": (11.34, 44.49),
    "Bologna Tecnopolo": (11.34, 44.49),
    "Kajaani": (27.73, 64.23),
    "Bissen": (6.07, 49.79),
    "Linköping": (15.62, 58.41),
    "Stuttgart": (9.18, 48.78),
    "Athens": (23.73, 37.98),
}
ET.register_namespace("", SVG)


def project(lon: float, lat: float) -> tuple[float, float]:
    """Longitude/latitude to map coordinates (the projection the SVG was drawn with)."""
    return round((lon - LON0) * SCALE_X, 1), round((LAT_TOP - lat) * SCALE_Y, 1)


@cache
def _base() -> str:
    return (files("aifactory.portal") / "static" / "europe.svg").read_text(encoding="utf-8")


def country_roles(factories: list[FactoryView], statuses: dict[str, str]) -> dict[str, list[str]]:
    """CSS classes per country: its EuroHPC status, and host/member of a factory."""
    roles: dict[str, list[str]] = {code: [status] for code, status in statuses.items()}
    for f in factories:
        roles.setdefault(f.country, []).append("host")
        for code in f.members:
            roles.setdefault(code, []).append("member")
    return roles


def europe_map(
    factories: list[FactoryView], statuses: dict[str, str], names: dict[str, str]
) -> Markup:
    """The inline SVG: coloured countries with titles, one labelled marker per factory."""
    root = ET.fromstring(_base())  # noqa: S314 (our own shipped file, not user input)
    roles = country_roles(factories, statuses)
    centres: dict[str, tuple[float, float]] = {}
    for path in root.iter(f"{{{SVG}}}path"):
        code = path.get("id", "")
        centres[code] = (float(path.get("data-cx", 0)), float(path.get("data-cy", 0)))
        path.set("class", " ".join(["country", *roles.get(code, [])]))
        title = ET.SubElement(path, f"{{{SVG}}}title")
        hosted = [f.name for f in factories if f.country == code or code in f.members]
        extra = f": {', '.join(hosted)}" if hosted else ""
        title.text = f"{names.get(code, path.get('data-name', code))} ({code}){extra}"
    markers = ET.SubElement(root, f"{{{SVG}}}g", {"class": "markers"})
    for f in factories:
        x, y = project(*CITIES[f.city]) if f.city in CITIES else centres.get(f.country, (0, 0))
        group = ET.SubElement(markers, f"{{{SVG}}}g", {"class": f"marker {f.status}"})
        ET.SubElement(group, f"{{{SVG}}}title").text = f"{f.name}, {f.city} ({f.status})"
        ET.SubElement(group, f"{{{SVG}}}circle", {"cx": str(x), "cy": str(y), "r": "4.5"})
        label = ET.SubElement(group, f"{{{SVG}}}text", {"x": str(x + 6), "y": str(y + 3)})
        label.text = f.name
    return Markup(ET.tostring(root, encoding="unicode"))  # noqa: S704 (ElementTree escaped it)
