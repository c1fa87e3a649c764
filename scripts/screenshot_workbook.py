#!/usr/bin/env python3
"""Render tabs of a revbot dashboard workbook to PNG with headless LibreOffice.

Usage (from the repository root, after
``apt-get install libreoffice-calc-nogui poppler-utils``)::

    cd "$(mktemp -d)" && /path/to/repo/.venv/bin/revbot demo
    .venv/bin/python scripts/screenshot_workbook.py /tmp/…/revbot-data/dashboard.xlsx \
        [--out docs/workbook.png] [--charts-out docs/workbook-charts.png] [--rows 30] \
        [--sample-out docs/daily-sample.md]

``docs/workbook.png`` shows the header and the first ``--rows`` rows of the Daily tab;
``docs/workbook-charts.png`` shows the chart block of the Charts tab (``--charts-area``, by
default P1:Y80: the daily net-revenue line chart of each currency, as the demo has five).

Not part of the test suite: it makes the README's pictures. The workbook itself is never
changed. For each tab the script writes a *copy* in which only that tab is visible and has a
print area fitted to one page (Daily: landscape with gridlines; Charts: portrait without), and
date-time columns widened so they do not print as ``###``; LibreOffice converts the copy to
PDF (first page only is kept) and ``pdftoppm`` rasterises it. With Pillow installed the white
page margins are trimmed. The copy is edited at the XML level rather than through openpyxl
because openpyxl drops charts when it re-saves a workbook. ``--sample-out`` also writes six
Daily rows as markdown table rows (no header), formatted as the workbook displays them.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

REPO_ROOT = Path(__file__).resolve().parents[1]

MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
SOFFICE = ("soffice", "libreoffice")


@dataclass(frozen=True)
class Shot:
    """One picture: which tab, which cell range, and where the PNG goes."""

    sheet: str
    area: str  # e.g. "A1:M31"; absolute references are added when written
    dpi: int
    out: Path
    landscape: bool
    gridlines: bool


def find_tool(explicit: str | None, names: tuple[str, ...], hint: str) -> str:
    """The first executable found among ``explicit`` and ``names``."""
    for candidate in (explicit, *names):
        if candidate and (path := shutil.which(candidate)):
            return path
    raise SystemExit(f"{names[0]} not found: {hint}")


def sheet_paths(archive: zipfile.ZipFile) -> dict[str, str]:
    """Map each tab name to its worksheet part, e.g. ``{'Daily': 'xl/worksheets/sheet1.xml'}``."""
    workbook = ET.fromstring(archive.read("xl/workbook.xml"))
    rels = ET.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
    targets = {
        rel.get("Id"): rel.get("Target", "") for rel in rels.iter(f"{{{PKG_REL_NS}}}Relationship")
    }
    result: dict[str, str] = {}
    for sheet in workbook.iter(f"{{{MAIN_NS}}}sheet"):
        target = targets[sheet.get(f"{{{REL_NS}}}id")]
        result[sheet.get("name", "")] = (
            target.lstrip("/") if target.startswith("/") else f"xl/{target}"
        )
    return result


def absolute(area: str) -> str:
    """``A1:M31`` -> ``$A$1:$M$31`` (the form Excel stores in a print area)."""
    return re.sub(r"([A-Z]+)(\d+)", r"$\1$\2", area)


def edit_workbook(xml: str, *, sheet: str, area: str) -> str:
    """Hide every other tab, make ``sheet`` the active one and give it a print area."""
    names = re.findall(r'<sheet\b[^>]*\bname="([^"]*)"', xml)
    if sheet not in names:
        raise SystemExit(f"no tab named {sheet!r} (tabs: {', '.join(names)})")
    index = names.index(sheet)

    def visibility(match: re.Match[str]) -> str:
        tag = re.sub(r'\s+state="[^"]*"', "", match.group(0))
        state = "visible" if f'name="{sheet}"' in tag else "hidden"
        return tag.replace("<sheet ", f'<sheet state="{state}" ', 1)

    xml = re.sub(r"<sheet\b[^>]*/>", visibility, xml)
    # A hidden tab must not be the active one, or LibreOffice shows it anyway.
    xml = re.sub(r'\bactiveTab="\d+"', f'activeTab="{index}"', xml)
    xml = re.sub(r'\bfirstSheet="\d+"', f'firstSheet="{index}"', xml)
    defined = (
        f'<definedName name="_xlnm.Print_Area" localSheetId="{index}">'
        f"'{sheet}'!{absolute(area)}</definedName>"
    )
    if re.search(r"<definedNames\s*/>", xml):
        return re.sub(r"<definedNames\s*/>", f"<definedNames>{defined}</definedNames>", xml)
    if "<definedNames>" in xml:
        return xml.replace("<definedNames>", f"<definedNames>{defined}", 1)
    return xml.replace("</sheets>", f"</sheets><definedNames>{defined}</definedNames>", 1)


def datetime_styles(styles_xml: bytes) -> set[str]:
    """Indices (as strings) of cell styles whose number format shows a time of day."""
    styles = ET.fromstring(styles_xml)
    codes = {
        fmt.get("numFmtId"): fmt.get("formatCode", "")
        for fmt in styles.iter(f"{{{MAIN_NS}}}numFmt")
    }
    cell_xfs = styles.find(f"{{{MAIN_NS}}}cellXfs")
    xfs = [] if cell_xfs is None else list(cell_xfs.iter(f"{{{MAIN_NS}}}xf"))
    # Built-in formats 18-22 and 45-47 are times; custom ones are recognised by "h".
    builtin = {"18", "19", "20", "21", "22", "45", "46", "47"}
    return {
        str(index)
        for index, xf in enumerate(xfs)
        if (num := xf.get("numFmtId", "0")) in builtin or "h" in codes.get(num, "").lower()
    }


def column_number(letters: str) -> int:
    """``A`` -> 1, ``M`` -> 13, ``AA`` -> 27."""
    number = 0
    for letter in letters:
        number = number * 26 + ord(letter) - ord("A") + 1
    return number


def widen_columns(xml: str, *, styles: set[str], width: float) -> str:
    """Give columns holding date-time cells at least ``width``, so they do not print as ###.

    The workbook sizes columns for Excel's font; in LibreOffice a ``yyyy-mm-dd hh:mm:ss`` value
    does not fit 12 characters, and the picture should show the value, not ``###``.
    """
    columns = {
        column_number(match.group(1))
        for match in re.finditer(r'<c r="([A-Z]+)\d+"[^>]*?\bs="(\d+)"', xml)
        if match.group(2) in styles
    }
    if not columns:
        return xml
    covered: set[int] = set()

    def widen(match: re.Match[str]) -> str:
        tag = match.group(0)
        low = int(re.search(r'\bmin="(\d+)"', tag).group(1))  # type: ignore[union-attr]
        high = int(re.search(r'\bmax="(\d+)"', tag).group(1))  # type: ignore[union-attr]
        span = set(range(low, high + 1))
        if not span & columns:
            return tag
        covered.update(span)
        current = re.search(r'\bwidth="([\d.]+)"', tag)
        if current and float(current.group(1)) >= width:
            return tag
        tag = re.sub(r'\s+(?:width|customWidth)="[^"]*"', "", tag)
        return tag.replace("<col ", f'<col width="{width}" customWidth="1" ', 1)

    xml = re.sub(r"<col\b[^>]*/>", widen, xml)
    missing = sorted(columns - covered)
    if missing:
        extra = "".join(
            f'<col min="{n}" max="{n}" width="{width}" customWidth="1"/>' for n in missing
        )
        # Rare (openpyxl writes a <col> per sized column); keep <col> elements sorted by min.
        if "<cols>" in xml:
            cols = re.search(r"<cols>(.*?)</cols>", xml, flags=re.S)
            assert cols is not None
            items = re.findall(r"<col\b[^>]*/>", cols.group(1) + extra)
            items.sort(key=lambda col: int(re.search(r'\bmin="(\d+)"', col).group(1)))  # type: ignore[union-attr]
            xml = xml[: cols.start(1)] + "".join(items) + xml[cols.end(1) :]
        else:
            xml = xml.replace("<sheetData", f"<cols>{extra}</cols><sheetData", 1)
    return xml


def edit_sheet(xml: str, *, landscape: bool, gridlines: bool) -> str:
    """Fit the print area on one page, landscape or portrait, with small margins."""
    xml = re.sub(r"<pageSetUpPr\b[^>]*/>", "", xml)
    if "<sheetPr/>" in xml or "<sheetPr />" in xml:
        xml = re.sub(r"<sheetPr\s*/>", '<sheetPr><pageSetUpPr fitToPage="1"/></sheetPr>', xml)
    elif "<sheetPr" in xml:
        xml = re.sub(r"(<sheetPr\b[^>]*>)", r'\1<pageSetUpPr fitToPage="1"/>', xml, count=1)
    else:
        xml = re.sub(
            r"(<worksheet\b[^>]*>)",
            r'\1<sheetPr><pageSetUpPr fitToPage="1"/></sheetPr>',
            xml,
            count=1,
        )
    for tag in ("printOptions", "pageMargins", "pageSetup"):
        xml = re.sub(rf"<{tag}\b[^>]*/>", "", xml)
    orientation = "landscape" if landscape else "portrait"
    # Schema order: sheetData … printOptions, pageMargins, pageSetup, headerFooter … drawing.
    page = (
        ('<printOptions gridLines="1"/>' if gridlines else "")
        + '<pageMargins left="0.3" right="0.3" top="0.3" bottom="0.3" header="0" footer="0"/>'
        + f'<pageSetup paperSize="9" orientation="{orientation}" fitToWidth="1" fitToHeight="1"/>'
    )
    anchor = re.search(r"</sheetData>|<sheetData\s*/>", xml)
    if anchor is None:
        raise SystemExit("worksheet has no sheetData")
    end = anchor.end()
    # Keep elements that must stay between sheetData and printOptions (filters, merges…).
    between = re.match(
        r"((?:<(?:sheetCalcPr|sheetProtection|protectedRanges|scenarios|autoFilter|sortState|"
        r"dataConsolidate|customSheetViews|mergeCells|phoneticPr|conditionalFormatting|"
        r"dataValidations|hyperlinks)\b.*?(?:/>|</\w+>))*)",
        xml[end:],
        flags=re.S,
    )
    end += len(between.group(1)) if between else 0
    return xml[:end] + page + xml[end:]


def prepared_copy(source: Path, shot: Shot, directory: Path) -> Path:
    """Write a copy of ``source`` set up to print ``shot.area`` of ``shot.sheet`` only."""
    copy = directory / f"{shot.out.stem}.xlsx"
    with zipfile.ZipFile(source) as src:
        parts = sheet_paths(src)
        times = datetime_styles(src.read("xl/styles.xml"))
        if shot.sheet not in parts:
            raise SystemExit(f"no tab named {shot.sheet!r} in {source}")
        with zipfile.ZipFile(copy, "w", compression=zipfile.ZIP_DEFLATED) as dst:
            for item in src.infolist():
                data = src.read(item.filename)
                if item.filename == "xl/workbook.xml":
                    text = edit_workbook(data.decode("utf-8"), sheet=shot.sheet, area=shot.area)
                    data = text.encode("utf-8")
                elif item.filename == parts[shot.sheet]:
                    text = widen_columns(data.decode("utf-8"), styles=times, width=20)
                    text = edit_sheet(text, landscape=shot.landscape, gridlines=shot.gridlines)
                    data = text.encode("utf-8")
                dst.writestr(item, data)
    return copy


def render(copy: Path, out: Path, *, soffice: str, pdftoppm: str, dpi: int) -> None:
    """xlsx -> pdf (LibreOffice, throwaway profile) -> PNG of page 1 (pdftoppm)."""
    work = copy.parent
    profile = (work / "lo-profile").resolve().as_uri()
    convert = [
        soffice,
        f"-env:UserInstallation={profile}",
        "--headless",
        "--norestore",
        "--convert-to",
        "pdf",
        "--outdir",
        str(work),
        str(copy),
    ]
    result = subprocess.run(convert, capture_output=True, text=True, timeout=300, check=False)
    pdf = copy.with_suffix(".pdf")
    if result.returncode != 0 or not pdf.exists():
        raise SystemExit(f"soffice failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    stem = work / out.stem
    raster = [
        pdftoppm,
        "-png",
        "-r",
        str(dpi),
        "-f",
        "1",
        "-l",
        "1",
        "-singlefile",
        str(pdf),
        str(stem),
    ]
    result = subprocess.run(raster, capture_output=True, text=True, timeout=120, check=False)
    png = stem.with_suffix(".png")
    if result.returncode != 0 or not png.exists():
        raise SystemExit(f"pdftoppm failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    trimmed = trim(png, margin=max(4, dpi // 10))
    shutil.copyfile(trimmed, out)


def trim(png: Path, *, margin: int) -> Path:
    """Crop the white page border (needs Pillow; without it the page is kept whole)."""
    try:
        from PIL import Image, ImageChops
    except ImportError:
        print("Pillow not installed: keeping the full page")
        return png
    with Image.open(png) as image:
        rgb = image.convert("RGB")
        background = Image.new("RGB", rgb.size, (255, 255, 255))
        box = ImageChops.difference(rgb, background).getbbox()
        if box is None:
            return png
        left, top, right, bottom = box
        box = (
            max(0, left - margin),
            max(0, top - margin),
            min(rgb.width, right + margin),
            min(rgb.height, bottom + margin),
        )
        cropped = png.with_name(f"{png.stem}-trimmed.png")
        rgb.crop(box).save(cropped, optimize=True)
    return cropped


SAMPLE_CURRENCIES = ("EUR", "JPY", "KWD", "USD")


def display(value: object, number_format: str) -> str:
    """A cell as the spreadsheet shows it, for the formats revbot writes.

    Money formats are ``"$"#,##0.00;-"$"#,##0.00`` (or ``#,##0.00 "XYZ"``): the value is
    rounded through ``Decimal`` to the format's decimals, never printed from a binary float.
    """
    if value is None:
        return ""
    if hasattr(value, "strftime"):
        pattern = "%Y-%m-%d %H:%M:%S" if "h" in number_format.lower() else "%Y-%m-%d"
        return value.strftime(pattern)  # type: ignore[no-any-return]
    if not isinstance(value, int | float) or number_format == "General":
        return str(value)
    from decimal import ROUND_HALF_UP, Decimal

    sections = number_format.split(";")
    negative = value < 0 and len(sections) > 1
    section = sections[1] if negative else sections[0]
    digits = re.search(r"#,##0(?:\.(0+))?", section)
    if digits is None:
        return str(value)
    places = len(digits.group(1) or "")
    amount = Decimal(str(abs(value) if negative else value))
    amount = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    text = section[: digits.start()] + f"{amount:,.{places}f}" + section[digits.end() :]
    return text.replace('"', "")


def daily_sample(xlsx: Path, *, count: int = 6) -> list[str]:
    """Markdown rows (no header) of the Daily tab for the README.

    The first day on which EUR, JPY, KWD and USD all have a row and at least two of them
    have a refund gives four rows; the first disputed rows in other currencies/days fill up.
    """
    from openpyxl import load_workbook

    sheet = load_workbook(xlsx)["Daily"]
    header = [cell.value for cell in sheet[1]]
    refunds, disputes = header.index("refunds"), header.index("disputes")
    rows = [list(row) for row in sheet.iter_rows(min_row=2) if row[0].value is not None]
    by_day: dict[object, dict[str, list]] = {}  # type: ignore[type-arg]
    for row in rows:
        by_day.setdefault(row[0].value, {})[str(row[1].value)] = row
    chosen: list[list] = []  # type: ignore[type-arg]
    for day_rows in by_day.values():
        if set(SAMPLE_CURRENCIES) <= set(day_rows):
            picked = [day_rows[ccy] for ccy in SAMPLE_CURRENCIES]
            if sum(1 for row in picked if row[refunds].value) >= 2:
                chosen = picked
                break
    seen = {(row[0].value, row[1].value) for row in chosen}
    for row in rows:
        if len(chosen) >= count:
            break
        currency = row[1].value
        fresh = (row[0].value, currency) not in seen
        if row[disputes].value and fresh and currency not in {r[1].value for r in chosen[4:]}:
            chosen.append(row)
            seen.add((row[0].value, currency))
    chosen = sorted(chosen[:count], key=lambda row: (row[0].value, str(row[1].value)))
    return [
        "| " + " | ".join(display(cell.value, cell.number_format) for cell in row) + " |"
        for row in chosen
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("xlsx", type=Path, help="dashboard.xlsx written by `revbot demo`")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "workbook.png")
    parser.add_argument(
        "--charts-out",
        default=str(REPO_ROOT / "docs" / "workbook-charts.png"),
        help="PNG of the Charts tab; pass an empty string to skip it",
    )
    parser.add_argument("--rows", type=int, default=30, help="Daily rows shown under the header")
    parser.add_argument("--daily-area", help="override the Daily range, e.g. A1:M31")
    parser.add_argument("--charts-area", default="P1:Y80", help="Charts range (the five charts)")
    parser.add_argument("--dpi", type=int, default=110, help="resolution of the Daily picture")
    parser.add_argument(
        "--charts-dpi", type=int, default=150, help="resolution of the Charts picture"
    )
    parser.add_argument("--soffice", help="LibreOffice executable")
    parser.add_argument("--sample-out", type=Path, help="also write sample Daily rows (markdown)")
    parser.add_argument("--no-pictures", action="store_true", help="skip the PNGs")
    args = parser.parse_args()

    if not args.xlsx.is_file():
        raise SystemExit(f"no such workbook: {args.xlsx}")
    if args.sample_out:
        args.sample_out.parent.mkdir(parents=True, exist_ok=True)
        args.sample_out.write_text("\n".join(daily_sample(args.xlsx)) + "\n", encoding="utf-8")
        print(f"wrote {args.sample_out}")
    if args.no_pictures:
        return
    soffice = find_tool(args.soffice, SOFFICE, "apt-get install libreoffice-calc-nogui")
    pdftoppm = find_tool(None, ("pdftoppm",), "apt-get install poppler-utils")
    shots = [
        Shot(
            sheet="Daily",
            area=args.daily_area or f"A1:M{args.rows + 1}",
            out=args.out,
            dpi=args.dpi,
            landscape=True,
            gridlines=True,
        )
    ]
    if args.charts_out:
        charts_out = Path(args.charts_out)
        shots.append(
            Shot(
                sheet="Charts",
                area=args.charts_area,
                out=charts_out,
                dpi=args.charts_dpi,
                landscape=False,
                gridlines=False,
            )
        )
    with tempfile.TemporaryDirectory(prefix="revbot-wb-") as tmp:
        for shot in shots:
            work = Path(tmp) / shot.out.stem
            work.mkdir()
            copy = prepared_copy(args.xlsx, shot, work)
            render(copy, shot.out, soffice=soffice, pdftoppm=pdftoppm, dpi=shot.dpi)
            print(f"wrote {shot.out}")


if __name__ == "__main__":
    main()
