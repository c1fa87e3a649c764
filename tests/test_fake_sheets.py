"""The fake Sheets API behaves like Google for what gspread and the dashboard use.

Plain gspread calls round-trip through it; bodies and query parameters are checked against the
discovery document; errors come in Google's JSON shape; the grid has Google's limits.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gspread
import jsonschema
import pytest
import requests

from tests.fakes.google_contract import SheetsContract, strip_nulls
from tests.fakes.sheets import (
    FakeSheetsServer,
    Formula,
    gspread_client,
    parse_fields,
    select_fields,
    write_service_account_key,
)

SID = "fake-sheet-1"


@pytest.fixture
def server() -> Iterator[FakeSheetsServer]:
    with FakeSheetsServer() as fake:
        fake.create_spreadsheet(SID, "Books")
        yield fake


@pytest.fixture
def gc(server: FakeSheetsServer) -> gspread.Client:
    return gspread_client(server)


def expect_api_error(status: int, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(gspread.exceptions.APIError) as info:
        fn(*args, **kwargs)
    assert info.value.response.status_code == status
    error: dict[str, Any] = info.value.response.json()["error"]
    assert error["code"] == status
    return error


# --- round trips through plain gspread ---------------------------------------------------------


def test_update_and_read_round_trip(server: FakeSheetsServer, gc: gspread.Client) -> None:
    ws = gc.open_by_key(SID).sheet1
    ws.update([["date", "amount", "note"], ["2024-01-31", 1234.5, "plain"]], "A1")

    assert ws.get_all_values() == [["date", "amount", "note"], ["2024-01-31", "1234.5", "plain"]]
    assert ws.get("B2", value_render_option="UNFORMATTED_VALUE") == [[1234.5]]
    assert server.grid(SID, "Sheet1") == [
        ["date", "amount", "note"],
        ["2024-01-31", 1234.5, "plain"],
    ]
    assert server.violations == []


def test_raw_keeps_strings_user_entered_parses_them(
    server: FakeSheetsServer, gc: gspread.Client
) -> None:
    ws = gc.open_by_key(SID).sheet1
    typed = [["=1+2", "123", "'007", "2024-01-31", "TRUE", "+1", "@x"]]
    ws.update(typed, "A1", value_input_option="RAW")
    ws.update(typed, "A2", value_input_option="USER_ENTERED")

    raw, entered = server.grid(SID, "Sheet1")
    assert raw == ["=1+2", "123", "'007", "2024-01-31", "TRUE", "+1", "@x"]
    assert entered == [Formula("=1+2"), 123, "007", 45322, True, 1, "@x"]
    assert server.cell(SID, "Sheet1", "D2")["userEnteredFormat"]["numberFormat"]["type"] == "DATE"
    assert ws.get("A1:A2", value_render_option="FORMULA") == [["=1+2"], ["=1+2"]]


def test_append_rows_after_the_table_and_grows_the_grid(
    server: FakeSheetsServer, gc: gspread.Client
) -> None:
    sh = gc.open_by_key(SID)
    ws = sh.add_worksheet("Small", rows=2, cols=3)
    ws.update([["h1", "h2"]], "A1")
    reply = ws.append_rows([["a", 1], ["b", 2]], table_range="A1")

    assert reply["tableRange"] == "Small!A1:B1"
    assert reply["updates"]["updatedRange"] == "Small!A2:B3"
    assert server.grid(SID, "Small") == [["h1", "h2"], ["a", 1], ["b", 2]]
    assert server.sheet_properties(SID, "Small")["gridProperties"]["rowCount"] == 3

    ws.append_rows([["c", 3]], table_range="A1", insert_data_option="INSERT_ROWS")
    assert server.grid(SID, "Small")[-1] == ["c", 3]
    assert server.sheet_properties(SID, "Small")["gridProperties"]["rowCount"] == 4


def test_values_batch_update_and_batch_get(server: FakeSheetsServer, gc: gspread.Client) -> None:
    ws = gc.open_by_key(SID).sheet1
    ws.batch_update([{"range": "A1:B1", "values": [["x", 1]]}, {"range": "D3", "values": [[2]]}])

    assert ws.batch_get(["A1:B1", "D:D"], value_render_option="UNFORMATTED_VALUE") == [
        [["x", 1]],
        [[], [], [2]],
    ]
    assert server.count("values.batchUpdate") == 1
    assert server.count("values.batchGet") == 1


def test_worksheets_formats_freeze_and_delete(server: FakeSheetsServer, gc: gspread.Client) -> None:
    sh = gc.open_by_key(SID)
    ws = sh.add_worksheet("Other", rows=10, cols=4)
    ws.freeze(rows=1)
    ws.format("B2:B", {"numberFormat": {"type": "CURRENCY", "pattern": '"$"#,##0.00'}})
    ws.update([[1234.5]], "B2")

    assert server.sheet_properties(SID, "Other")["gridProperties"]["frozenRowCount"] == 1
    assert (
        server.cell(SID, "Other", "B10")["userEnteredFormat"]["numberFormat"]["type"] == "CURRENCY"
    )
    assert ws.acell("B2").value == "$1,234.50"
    assert server.sheet_titles(SID) == ["Sheet1", "Other"]

    sh.del_worksheet(ws)
    assert server.sheet_titles(SID) == ["Sheet1"]
    with pytest.raises(gspread.exceptions.WorksheetNotFound):
        sh.worksheet("Other")


def test_batch_update_requests_used_by_the_dashboard(
    server: FakeSheetsServer, gc: gspread.Client
) -> None:
    sh = gc.open_by_key(SID)
    body = {
        "requests": [
            {
                "addSheet": {
                    "properties": {
                        "sheetId": 77,
                        "title": "T",
                        "gridProperties": {"rowCount": 2, "columnCount": 3},
                    }
                }
            },
            {"appendDimension": {"sheetId": 77, "dimension": "ROWS", "length": 3}},
            {
                "insertDimension": {
                    "range": {"sheetId": 77, "dimension": "ROWS", "startIndex": 0, "endIndex": 1}
                }
            },
            {
                "updateCells": {
                    "start": {"sheetId": 77, "rowIndex": 1},
                    "rows": [
                        {
                            "values": [
                                {"userEnteredValue": {"stringValue": "=A1"}},
                                {"userEnteredValue": {"numberValue": 2}},
                            ]
                        }
                    ],
                    "fields": "userEnteredValue",
                }
            },
            {
                "appendCells": {
                    "sheetId": 77,
                    "rows": [{"values": [{"userEnteredValue": {"boolValue": True}}]}],
                    "fields": "*",
                }
            },
            {
                "repeatCell": {
                    "range": {
                        "sheetId": 77,
                        "startRowIndex": 1,
                        "startColumnIndex": 1,
                        "endColumnIndex": 2,
                    },
                    "cell": {
                        "userEnteredFormat": {"numberFormat": {"type": "NUMBER", "pattern": "0.0"}}
                    },
                    "fields": "userEnteredFormat.numberFormat",
                }
            },
            {
                "updateDimensionProperties": {
                    "range": {
                        "sheetId": 77,
                        "dimension": "COLUMNS",
                        "startIndex": 0,
                        "endIndex": 2,
                    },
                    "properties": {"pixelSize": 200},
                    "fields": "pixelSize",
                }
            },
            {
                "updateSheetProperties": {
                    "properties": {
                        "sheetId": 77,
                        "title": "T2",
                        "gridProperties": {"frozenRowCount": 1},
                    },
                    "fields": "title,gridProperties.frozenRowCount",
                }
            },
        ]
    }
    reply = sh.batch_update(body)

    assert reply["replies"][0]["addSheet"]["properties"]["sheetId"] == 77
    assert server.grid(SID, "T2") == [[None, None], ["=A1", 2], [True, None]]
    assert server.cell(SID, "T2", "B6")["userEnteredFormat"]["numberFormat"]["pattern"] == "0.0"
    grid = server.sheet_properties(SID, "T2")["gridProperties"]
    assert grid == {"rowCount": 6, "columnCount": 3, "frozenRowCount": 1}
    assert server.dimension_properties(SID, "T2")[("COLUMNS", 1)] == {"pixelSize": 200}
    assert server.violations == []


def test_add_chart_and_metadata_field_mask(server: FakeSheetsServer, gc: gspread.Client) -> None:
    sh = gc.open_by_key(SID)
    sh.batch_update({"requests": [chart_request(chart_type="LINE")]})

    [chart] = server.charts(SID)
    assert chart["spec"]["basicChart"]["chartType"] == "LINE"
    assert chart["position"]["overlayPosition"]["widthPixels"] == 600  # Google's default
    meta = sh.client.fetch_sheet_metadata(
        SID, params={"fields": "sheets(properties(title),charts(chartId,spec(title)))"}
    )
    assert meta == {
        "sheets": [
            {
                "properties": {"title": "Sheet1"},
                "charts": [{"chartId": chart["chartId"], "spec": {"title": "Net"}}],
            }
        ]
    }


def chart_request(*, chart_type: str) -> dict[str, Any]:
    source = {"sheetId": 0, "startRowIndex": 0, "startColumnIndex": 0, "endColumnIndex": 1}
    series = {**source, "startColumnIndex": 1, "endColumnIndex": 2}
    return {
        "addChart": {
            "chart": {
                "spec": {
                    "title": "Net",
                    "basicChart": {
                        "chartType": chart_type,
                        "domains": [{"domain": {"sourceRange": {"sources": [source]}}}],
                        "series": [{"series": {"sourceRange": {"sources": [series]}}}],
                    },
                },
                "position": {"overlayPosition": {"anchorCell": {"sheetId": 0}}},
            }
        }
    }


# --- validation against the discovery document -------------------------------------------------


def test_invalid_enum_is_rejected_in_googles_shape(
    server: FakeSheetsServer, gc: gspread.Client
) -> None:
    sh = gc.open_by_key(SID)
    error = expect_api_error(
        400, sh.batch_update, {"requests": [chart_request(chart_type="LINES")]}
    )

    assert error["status"] == "INVALID_ARGUMENT"
    assert "chartType" in error["message"]
    [detail] = error["details"]
    assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert "chartType" in detail["fieldViolations"][0]["field"]
    assert server.charts(SID) == []
    assert len(server.violations) == 1
    server.violations.clear()


def test_unknown_field_unsupported_request_and_bad_query_are_rejected(
    server: FakeSheetsServer, gc: gspread.Client
) -> None:
    sh = gc.open_by_key(SID)
    bad_field = {"requests": [{"addSheet": {"properties": {"titel": "x"}}}]}
    assert "titel" in expect_api_error(400, sh.batch_update, bad_field)["message"]

    unsupported = {"requests": [{"mergeCells": {"range": {"sheetId": 0}}}]}
    assert "mergeCells" in expect_api_error(400, sh.batch_update, unsupported)["message"]

    bad_query = {"valueInputOption": "TYPED"}
    error = expect_api_error(
        400, sh.values_update, "Sheet1!A1", params=bad_query, body={"values": [[1]]}
    )
    assert "valueInputOption" in error["message"]
    assert len(server.violations) == 3
    server.violations.clear()


def test_batch_update_is_atomic(server: FakeSheetsServer, gc: gspread.Client) -> None:
    sh = gc.open_by_key(SID)
    body = {
        "requests": [
            {"addSheet": {"properties": {"title": "Partial"}}},
            {
                "updateCells": {
                    "start": {"sheetId": 0, "rowIndex": 5000},
                    "rows": [{}],
                    "fields": "*",
                }
            },
        ]
    }
    error = expect_api_error(400, sh.batch_update, body)

    assert "exceeds grid limits" in error["message"]
    assert error["message"].startswith("Invalid requests[1].updateCells")
    assert server.sheet_titles(SID) == ["Sheet1"]


def test_nulls_sent_by_gspread_are_dropped_before_validation() -> None:
    assert strip_nulls({"a": None, "b": [{"c": None, "d": 1}]}) == {"b": [{"d": 1}]}


SAMPLE_BODIES = [
    ({"requests": [chart_request(chart_type="COLUMN")]}, True),
    ({"requests": [chart_request(chart_type="LINES")]}, False),
    (
        {
            "requests": [
                {
                    "updateCells": {
                        "rows": [{"values": [{"userEnteredValue": {"numberValue": "1"}}]}]
                    }
                }
            ]
        },
        False,
    ),
    (
        {
            "requests": [
                {
                    "repeatCell": {
                        "cell": {"userEnteredFormat": {"numberFormat": {"type": "PERCENT"}}},
                        "fields": "x",
                    }
                }
            ]
        },
        True,
    ),
    ({"requests": [{"appendDimension": {"sheetId": 1.5, "length": 2}}]}, False),
    ({"requests": [], "includeSpreadsheetInResponse": "yes"}, False),
    (
        {
            "requests": [
                {"addSheet": {"properties": {"title": "x", "gridProperties": {"rowCount": 3}}}}
            ]
        },
        True,
    ),
]


@pytest.mark.parametrize(("body", "valid"), SAMPLE_BODIES, ids=[str(i) for i in range(7)])
def test_fast_validator_agrees_with_jsonschema(body: dict[str, Any], valid: bool) -> None:
    contract = SheetsContract()
    schema = {**contract.json_schema, "$ref": "#/definitions/BatchUpdateSpreadsheetRequest"}
    reference = list(jsonschema.Draft7Validator(schema).iter_errors(body))
    fast = contract.schema_errors("BatchUpdateSpreadsheetRequest", body)

    assert (not reference) is valid
    assert (not fast) is valid
    # Both sets of closures: the yes/no one that runs first, and the one naming violations.
    assert contract.is_valid("BatchUpdateSpreadsheetRequest", body) is valid
    assert (not contract.detailed_errors("BatchUpdateSpreadsheetRequest", body)) is valid


def test_field_masks() -> None:
    assert parse_fields("a,b.c,d(e,f/g)") == {
        "a": {},
        "b": {"c": {}},
        "d": {"e": {}, "f": {"g": {}}},
    }
    assert select_fields({"a": 1, "b": {"c": 2, "x": 3}, "z": 0}, parse_fields("a,b.c")) == {
        "a": 1,
        "b": {"c": 2},
    }
    assert parse_fields("sheets(properties(title))") == {"sheets": {"properties": {"title": {}}}}


# --- errors, auth, limits --------------------------------------------------------------------


def test_missing_and_unshared_spreadsheets(server: FakeSheetsServer, gc: gspread.Client) -> None:
    with pytest.raises(gspread.exceptions.SpreadsheetNotFound):
        gc.open_by_key("nope")
    server.unshare(SID)
    error = expect_api_error(403, gc.http_client.fetch_sheet_metadata, SID)
    assert error == {"code": 403, "message": "The caller does not have permission",
                     "status": "PERMISSION_DENIED"}  # fmt: skip
    server.share(SID)
    assert gc.open_by_key(SID).title == "Books"


def test_requests_need_a_token_from_the_token_endpoint(
    server: FakeSheetsServer, tmp_path: Path
) -> None:
    plain = requests.get(f"{server.url}/v4/spreadsheets/{SID}", timeout=5)
    assert plain.status_code == 401
    assert plain.json()["error"]["status"] == "UNAUTHENTICATED"

    from google.oauth2 import service_account

    info = write_service_account_key(tmp_path / "key.json", token_uri=server.token_uri)
    creds = service_account.Credentials.from_service_account_info(
        info, scopes=["https://www.googleapis.com/auth/spreadsheets"]
    )
    client = gspread.Client(creds)
    client.http_client.request = _rewrite(client.http_client.request, server.url)  # type: ignore[method-assign]
    assert client.open_by_key(SID).title == "Books"
    [claims] = server.token_requests
    assert claims["scope"] == "https://www.googleapis.com/auth/spreadsheets"
    assert claims["iss"] == "revbot@test-project.iam.gserviceaccount.com"

    server.expire_tokens()  # google-auth refreshes on the 401 and retries
    assert client.open_by_key(SID).title == "Books"
    assert len(server.token_requests) == 2


def _rewrite(request: Any, base: str) -> Any:
    def wrapped(method: str, endpoint: str, *args: Any, **kwargs: Any) -> Any:
        return request(
            method, endpoint.replace("https://sheets.googleapis.com", base), *args, **kwargs
        )

    return wrapped


def test_injected_failures_have_googles_bodies(
    server: FakeSheetsServer, gc: gspread.Client
) -> None:
    server.inject(429, times=2)
    server.inject(500)
    first = expect_api_error(429, gc.open_by_key, SID)
    assert first["status"] == "RESOURCE_EXHAUSTED"
    assert first["details"][0]["reason"] == "RATE_LIMIT_EXCEEDED"
    assert first["details"][0]["metadata"]["quota_limit"] == "WriteRequestsPerMinutePerUser"
    expect_api_error(429, gc.open_by_key, SID)
    assert expect_api_error(500, gc.open_by_key, SID)["status"] == "INTERNAL"
    assert gc.open_by_key(SID).title == "Books"
    assert server.statuses[-4:] == [429, 429, 500, 200]


def test_injection_can_target_one_kind(server: FakeSheetsServer, gc: gspread.Client) -> None:
    server.inject(503, kind="spreadsheets.batchUpdate")
    sh = gc.open_by_key(SID)
    expect_api_error(503, sh.batch_update, {"requests": [{"addSheet": {}}]})
    sh.batch_update({"requests": [{"addSheet": {}}]})
    assert server.sheet_titles(SID) == ["Sheet1", "Sheet2"]
    assert server.count("spreadsheets.batchUpdate") == 2
    assert server.count("spreadsheets.get") == 1


def test_grid_limits(server: FakeSheetsServer, gc: gspread.Client) -> None:
    ws = gc.open_by_key(SID).sheet1
    error = expect_api_error(400, ws.update, [[1, 2]], "Z1000")
    assert error["message"] == (
        "Range (Sheet1!Z1000:AA1000) exceeds grid limits. Max rows: 1000, max columns: 26"
    )
    expect_api_error(400, ws.get, "A1:A1001")
    error = expect_api_error(
        400,
        ws.spreadsheet.batch_update,
        {"requests": [{"appendDimension": {"sheetId": 0, "dimension": "ROWS", "length": 400_000}}]},
    )
    assert "10000000 cells" in error["message"]


def test_duplicate_sheet_title(server: FakeSheetsServer, gc: gspread.Client) -> None:
    sh = gc.open_by_key(SID)
    error = expect_api_error(400, sh.add_worksheet, "sheet1", rows=1, cols=1)
    assert 'A sheet with the name "sheet1" already exists' in error["message"]


def test_request_log(server: FakeSheetsServer, gc: gspread.Client) -> None:
    gc.open_by_key(SID).sheet1.get("A1")
    method, path, query, target, body, response = server.requests[-1]
    assert (method, path) == ("GET", f"/v4/spreadsheets/{SID}/values/'Sheet1'!A1")
    # The sizes of what was sent and answered, as on the wire (the range is quoted there).
    assert target == len(f"/v4/spreadsheets/{SID}/values/%27Sheet1%27%21A1")
    assert body == 0 and response > len('{"range": "Sheet1!A1"}')
    assert server.requests[-1].kind == "values.get"
    assert json.loads(json.dumps(query)) == query
    assert server.count() == len(server.requests)


# --- Google's limits on cells and bodies ----------------------------------------------------------


def test_the_cell_limit_is_the_servers_and_refused_in_googles_words() -> None:
    with FakeSheetsServer(max_cells=30_000) as fake:
        fake.create_spreadsheet(SID, "Books")  # Sheet1: 1000 x 26 = 26,000 cells
        sh = gspread_client(fake).open_by_key(SID)
        grow = {"appendDimension": {"sheetId": 0, "dimension": "ROWS", "length": 200}}
        small = {"rowCount": 10, "columnCount": 10}
        addition = {"addSheet": {"properties": {"title": "New", "gridProperties": small}}}

        error = expect_api_error(400, sh.batch_update, {"requests": [addition, grow]})

        assert error["status"] == "INVALID_ARGUMENT"
        assert error["message"] == (
            "Invalid requests[1].appendDimension: This action would increase the number of "
            "cells in the workbook above the limit of 30000 cells."
        )
        assert fake.sheet_titles(SID) == ["Sheet1"]  # all or nothing
        sh.batch_update({"requests": [{**grow, "appendDimension": {**grow["appendDimension"],
                                                                  "length": 150}}]})  # fmt: skip
        assert fake.spreadsheets[SID].total_cells() == 29_900


def test_a_body_above_ten_mebibytes_is_refused(
    server: FakeSheetsServer, gc: gspread.Client
) -> None:
    sh = gc.open_by_key(SID)
    text = "x" * 40_000
    row = {"values": [{"userEnteredValue": {"stringValue": text}}] * 10}
    write = {"updateCells": {"start": {"sheetId": 0}, "rows": [row] * 27, "fields": "*"}}
    body = {"requests": [write]}
    assert len(json.dumps(body)) > 10_485_760

    error = expect_api_error(400, sh.batch_update, body)

    assert error == {
        "code": 400,
        "message": "Request payload size exceeds the limit: 10485760 bytes.",
        "status": "INVALID_ARGUMENT",
    }
    assert server.grid(SID, "Sheet1") == []
    assert server.requests[-1].body_bytes > 10_485_760


# --- removing rows, sorting, and undoing a failed write ---------------------------------------


def delete_rows(sheet_id: int, start: int, end: int, dimension: str = "ROWS") -> dict[str, Any]:
    span = {"sheetId": sheet_id, "dimension": dimension, "startIndex": start, "endIndex": end}
    return {"deleteDimension": {"range": span}}


def test_delete_dimension_moves_what_follows_and_shrinks_the_grid(
    server: FakeSheetsServer, gc: gspread.Client
) -> None:
    sh = gc.open_by_key(SID)
    ws = sh.add_worksheet("T", rows=6, cols=3)
    ws.update([["h", "x"], ["a", 1], ["b", 2], ["c", 3], ["d", 4]], "A1")
    ws.freeze(rows=1)
    sh.batch_update({"requests": [delete_rows(ws.id, 3, 5), delete_rows(ws.id, 1, 2)]})

    assert server.grid(SID, "T") == [["h", "x"], ["b", 2]]
    assert server.sheet_properties(SID, "T")["gridProperties"]["rowCount"] == 3
    sh.batch_update({"requests": [delete_rows(ws.id, 0, 1, "COLUMNS")]})
    assert server.grid(SID, "T") == [["x"], [2]]
    assert server.sheet_properties(SID, "T")["gridProperties"]["columnCount"] == 2

    every = expect_api_error(400, sh.batch_update, {"requests": [delete_rows(ws.id, 1, 3)]})
    assert "not possible to delete all non-frozen rows" in every["message"]
    beyond = expect_api_error(400, sh.batch_update, {"requests": [delete_rows(ws.id, 2, 9)]})
    assert "Invalid dimension range" in beyond["message"]
    bad = {"deleteDimension": {"range": {"sheetId": ws.id, "dimension": "ROW"}}}
    assert "dimension" in expect_api_error(400, sh.batch_update, {"requests": [bad]})["message"]
    assert len(server.violations) == 1  # "ROW" is not in the discovery document's enum
    server.violations.clear()


def test_sort_range_orders_rows_empty_cells_last(
    server: FakeSheetsServer, gc: gspread.Client
) -> None:
    ws = gc.open_by_key(SID).sheet1
    ws.update([["id", "n"], ["a", 2], ["b", None], ["c", 10], ["d", 1]], "A1")
    spec = {"dimensionIndex": 1, "sortOrder": "DESCENDING"}
    sort = {"sortRange": {"range": {"sheetId": 0, "startRowIndex": 1}, "sortSpecs": [spec]}}
    ws.spreadsheet.batch_update({"requests": [sort]})

    assert server.grid(SID, "Sheet1") == [["id", "n"], ["c", 10], ["a", 2], ["d", 1], ["b", None]]


def test_a_failed_write_puts_back_every_cell_it_changed(
    server: FakeSheetsServer, gc: gspread.Client
) -> None:
    """Cells are changed in place and journalled, not copied: a failure part-way must still
    leave the spreadsheet exactly as it was."""
    sh = gc.open_by_key(SID)
    ws = sh.sheet1
    ws.update([["a", 1], ["b", 2], ["c", 3]], "A1")
    ws.format("B1:B3", {"numberFormat": {"type": "NUMBER", "pattern": "0.0"}})
    before = server.grid(SID, "Sheet1"), server.formats(SID, "Sheet1")
    value = {"userEnteredValue": {"stringValue": "new"}}
    body = {
        "requests": [
            {"updateCells": {"start": {"sheetId": 0}, "rows": [{"values": [value] * 2}] * 3,
                             "fields": "userEnteredValue"}},
            {"repeatCell": {"range": {"sheetId": 0, "endRowIndex": 3},
                            "cell": {"userEnteredFormat": {"numberFormat": {"type": "TEXT"}}},
                            "fields": "userEnteredFormat.numberFormat"}},
            delete_rows(0, 0, 1),
            {"appendDimension": {"sheetId": 0, "dimension": "ROWS", "length": 5}},
            {"updateCells": {"start": {"sheetId": 0, "rowIndex": 5000}, "rows": [{}],
                             "fields": "*"}},
        ]
    }  # fmt: skip
    error = expect_api_error(400, sh.batch_update, body)

    assert error["message"].startswith("Invalid requests[4].updateCells")
    assert (server.grid(SID, "Sheet1"), server.formats(SID, "Sheet1")) == before
    assert server.sheet_properties(SID, "Sheet1")["gridProperties"]["rowCount"] == 1000
