"""Injection, closed four ways: names from config are plain identifiers (a name cannot become
SQL); object keys from a bucket cannot leave the landing folder; CSV and XLSX outputs
neutralize spreadsheet formulas; the HTML report renders partner text inert."""

from __future__ import annotations

import csv
import json
import shutil
import sys
import uuid
from pathlib import Path

import boto3
import openpyxl
import pyarrow.parquet as pq
import pytest
import yaml
from pydantic import ValidationError

from connectors import build_connector
from revshare.config import SourceConfig, load_config
from revshare.errors import SourceError
from revshare.generate import generate
from revshare.periods import Period
from revshare.sqlutil import ident
from revshare.stages import extract

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "cloud"))
import servers  # noqa: E402
from servers import azurite_connection_string  # noqa: E402

# The local servers' fixtures, registered in this module under their own names.
moto = servers.moto
azurite = servers.azurite

pytestmark = pytest.mark.integration
PERIOD = Period.parse("2026-10")
HOSTILE = ["x'; DROP TABLE runs; --", 'a"b']


def _config_dir(tmp_path: Path, edit) -> Path:
    """A copy of the example config with one YAML file edited."""
    cfg = tmp_path / "config"
    shutil.copytree(REPO / "config", cfg)
    name, fn = edit
    doc = yaml.safe_load((cfg / name).read_text())
    fn(doc)
    (cfg / name).write_text(yaml.safe_dump(doc, sort_keys=False))
    return cfg


# -- (a) names from config -----------------------------------------------------------------


@pytest.mark.parametrize("bad", HOSTILE)
@pytest.mark.parametrize(
    "where",
    ["partner id", "model id", "catalog rule model", "contract partner", "contract model"],
)
def test_config_name_that_could_inject_is_refused(tmp_path: Path, where: str, bad: str) -> None:
    def partner(doc):
        doc["partners"][bad] = doc["partners"].pop("aws")

    def model(doc):
        doc["models"][0]["id"] = bad

    def rule(doc):
        doc["partners"]["aws"]["models"][0]["model"] = bad

    def contract_partner(doc):
        doc["contracts"].append({**doc["contracts"][0], "partner": bad})

    def contract_model(doc):
        doc["contracts"][0]["model_rates"] = {bad: "0.1"}
        doc["contracts"][0].pop("tiers", None)
        doc["contracts"][0].setdefault("share_rate", "0.1")

    edits = {
        "partner id": ("partners.yaml", partner),
        "model id": ("catalog.yaml", model),
        "catalog rule model": ("catalog.yaml", rule),
        "contract partner": ("contracts.yaml", contract_partner),
        "contract model": ("contracts.yaml", contract_model),
    }
    cfg = _config_dir(tmp_path, edits[where])
    with pytest.raises((ValidationError, ValueError)) as err:
        load_config(cfg)
    assert bad in str(err.value) or "pattern" in str(err.value)


SETTINGS_NAMES = [
    ("gcp_billing", {"project": "my-project-1", "dataset": "d"}, "table"),
    ("gcp_billing", {"project": "my-project-1", "table": "t"}, "dataset"),
    ("snowflake_usage", {"account": "a", "user": "u"}, "usage_view"),
    ("snowflake_usage", {"account": "a", "user": "u"}, "role"),
    ("snowflake_usage", {"account": "a", "user": "u"}, "warehouse"),
    ("aws_cur2", {"path": "cur2"}, "export_name"),
    ("azure_cost", {"path": "x", "export_name": "e"}, "container"),
    ("azure_cost", {"path": "x"}, "export_name"),
]


@pytest.mark.parametrize("bad", HOSTILE)
@pytest.mark.parametrize(("kind", "base", "field"), SETTINGS_NAMES)
def test_connector_setting_name_that_could_inject_is_refused(
    kind: str, base: dict, field: str, bad: str, tmp_path: Path
) -> None:
    with pytest.raises(SourceError, match=field):
        build_connector(SourceConfig(type=kind, **{**base, field: bad}), tmp_path, "p/billing")


def test_quoted_column_setting_is_refused_too(tmp_path: Path) -> None:
    """FOCUS's sku_key_column becomes a quoted identifier; a hostile one is refused earlier."""
    src = SourceConfig(type="focus", path="focus", sku_key_column=HOSTILE[0])
    with pytest.raises(SourceError, match="sku_key_column"):
        build_connector(src, tmp_path, "p/focus")


@pytest.mark.parametrize("bad", [*HOSTILE, "", "1a", "a b"])
def test_ident_refuses_anything_but_plain_names(bad: str) -> None:
    with pytest.raises(ValueError, match="not a plain SQL identifier"):
        ident(bad)


# -- (b) object keys from a bucket -----------------------------------------------------------


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("inj-month") / "data"
    generate(load_config(REPO / "config"), PERIOD, out, rows=60)
    return out


def _escaped(root: Path, name: str) -> list[Path]:
    return [p for p in root.rglob(name) if "landing" not in p.parts]


@pytest.mark.parametrize("kind", ["aws_cur2", "focus"])
@pytest.mark.parametrize("hostile", ["../../../../../../escaped.parquet", "/abs/escaped.parquet"])
def test_s3_keys_cannot_escape_the_landing_folder(
    moto: str, month: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, hostile
) -> None:
    """A manifest (it is data) listing a key with '..' or an absolute key is refused before
    anything is downloaded; the export's own layout is that of the CUR 2.0 connector, which
    the FOCUS connector's S3 pull shares."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1")
    root = month / "aws" / "cur2"
    manifest = next(root.rglob("*-Manifest.json"))
    doc = json.loads(manifest.read_text())
    bucket, _, key = doc["dataFiles"][0][len("s3://") :].partition("/")
    prefix = key[: key.index("revshare-bedrock/")].rstrip("/")
    if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=bucket)
    for p in root.rglob("*"):
        if p.is_file():
            s3.upload_file(str(p), bucket, f"{prefix}/{p.relative_to(root).as_posix()}")
    part = doc["dataFiles"][0].rsplit("/", 1)[0]
    evil = f"{part}/{hostile}" if not hostile.startswith("/") else f"s3://{bucket}/{hostile}"
    s3.put_object(Bucket=bucket, Key=evil[len(f"s3://{bucket}/") :], Body=b"x")
    doc["dataFiles"].append(evil)
    man_key = f"{prefix}/{manifest.relative_to(root).as_posix()}"
    s3.put_object(Bucket=bucket, Key=man_key, Body=json.dumps(doc).encode())
    settings = {"path": f"s3://{bucket}/{prefix}", "export_name": "revshare-bedrock",
                "endpoint_url": moto, "region": "us-east-1", "retry_attempts": 1}  # fmt: skip
    conn = build_connector(SourceConfig(type=kind, **settings), tmp_path, "aws/billing")
    with pytest.raises(SourceError, match=r"manifest lists .*escaped\.parquet"):
        extract(conn, PERIOD, tmp_path / "landing")
    assert _escaped(tmp_path, "escaped.parquet") == []
    assert not (Path("/abs") / "escaped.parquet").exists()


def test_azure_blob_names_cannot_escape_the_landing_folder(
    azurite: int, month: Path, tmp_path: Path
) -> None:
    """A run manifest naming a blob '../../escaped.csv.gz' is not trusted: the run is skipped
    as incomplete, nothing lands outside, and with no other run the source is refused."""
    from azure.storage.blob import BlobServiceClient

    conn_str = azurite_connection_string(azurite)
    name = f"inj{uuid.uuid4().hex[:10]}"
    container = BlobServiceClient.from_connection_string(conn_str).create_container(name)
    root = month / "azure"
    for p in root.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            if p.name == "manifest.json":
                doc = json.loads(data)
                run_rel = p.parent.relative_to(root).as_posix()
                doc["blobs"][0]["blobName"] = f"{run_rel}/../../../../escaped.csv.gz"
                data = json.dumps(doc).encode()
            container.upload_blob(p.relative_to(root).as_posix(), data)
    container.upload_blob("costexports/escaped.csv.gz", b"x")
    import os

    os.environ["INJ_AZ_CONN"] = conn_str
    try:
        src = SourceConfig(type="azure_cost", container=name, path="costexports",
                           export_name="revshare-foundry", connection_string_env="INJ_AZ_CONN",
                           retry_attempts=1)  # fmt: skip
        with pytest.raises(SourceError, match="unsafe blob name"):
            extract(build_connector(src, tmp_path, "azure/billing"), PERIOD, tmp_path / "landing")
    finally:
        os.environ.pop("INJ_AZ_CONN", None)
    assert _escaped(tmp_path, "escaped.csv.gz") == []


# -- (c) formulas and (d) HTML: hostile partner text through a real run -----------------------

SKU = 'llama=HYPERLINK("http://evil.example/x","click")<script>alert(2)</script>'
NAME = "Evil <script>alert(3)</script> Cloud"


@pytest.fixture(scope="module")
def hostile_run(month: Path, tmp_path_factory: pytest.TempPathFactory, prefect_api) -> Path:
    """The demo month with an unmapped, in-scope AWS SKU and a partner name carrying script and
    formula text, reconciled by the flow (dry run)."""
    root = tmp_path_factory.mktemp("inj-run")
    data = root / "data"
    shutil.copytree(month, data)
    part = next((data / "aws").rglob("*.parquet"))
    t = pq.read_table(part)
    kinds = t["line_item_line_item_type"].to_pylist()
    usage = t["line_item_usage_type"].to_pylist()
    usage[kinds.index("Usage")] = SKU
    i = t.schema.get_field_index("line_item_usage_type")
    import pyarrow as pa

    pq.write_table(t.set_column(i, t.schema.field(i), pa.array(usage, pa.string())), part)
    cfg = _config_dir(root, ("partners.yaml", lambda d: d["partners"]["aws"].update(name=NAME)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REVSHARE_CONFIG_DIR", str(cfg))
        mp.setenv("REVSHARE_DATA_DIR", str(data))
        mp.setenv("REVSHARE_HOME", str(root / "home"))
        from flows.reconcile import reconcile_period

        report = Path(reconcile_period(period=str(PERIOD), dry_run=True)["report"])
    return report.parent


def test_results_and_packet_csvs_neutralize_formulas(hostile_run: Path) -> None:
    seen = 0
    for path in [*hostile_run.glob("results/*.csv"), *hostile_run.glob("packets/**/*.csv")]:
        for row in csv.reader(path.open(newline="")):
            for cell in row:
                if "HYPERLINK" in cell:
                    seen += 1
                assert not cell.lstrip(" ").startswith(("=", "+", "@", "\t", "\r")), (path, cell)
                if cell.startswith("-"):  # a minus is only ever a number's sign
                    float(cell)
    assert seen, "the planted SKU must reach the CSVs (else this test checks nothing)"


def test_packet_workbooks_hold_no_formula(hostile_run: Path) -> None:
    books = list(hostile_run.glob("packets/**/*.xlsx"))
    assert books
    seen = 0
    for book in books:
        wb = openpyxl.load_workbook(book)
        for ws in wb.worksheets:
            for row in ws.iter_rows():
                for c in row:
                    assert c.data_type != "f", (book, c.coordinate, c.value)
                    seen += isinstance(c.value, str) and "HYPERLINK" in c.value
                    if isinstance(c.value, str) and "HYPERLINK" in c.value:
                        assert c.value.startswith("'") or not c.value.startswith("=")
    assert seen, "the planted SKU must reach a packet"


def test_report_renders_partner_text_inert(hostile_run: Path) -> None:
    html = (hostile_run / "report.html").read_text()
    assert "<script>alert(2)" not in html and "<script>alert(3)" not in html
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html  # the SKU, shown as text
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in html  # the partner name, shown as text
