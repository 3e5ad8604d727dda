"""`deskbooks receipt scan` reads a receipt image offline and refuses junk cleanly."""

from __future__ import annotations

import json

from PIL import Image, ImageDraw, ImageFont
from typer.testing import CliRunner

from bot.cli import app

runner = CliRunner()


def test_scan_prints_fields_from_a_rendered_receipt(tmp_path):
    """A rendered receipt yields its vendor, date, total and card last four."""
    img = Image.new("RGB", (600, 500), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=28)
    for i, text in enumerate(["CORNER COFFEE CO", "12 Main St", "Date: 2026-03-04",
                              "Latte      4.50", "Muffin     3.25", "TOTAL      7.75",
                              "VISA XXXX1234"]):
        draw.text((30, 20 + i * 60), text, fill="black", font=font)
    path = tmp_path / "receipt.png"
    img.save(path)
    result = runner.invoke(app, ["receipt", "scan", str(path), "--today", "2026-03-10",
                                 "--json"])
    assert result.exit_code == 0, result.output
    fields = json.loads(result.stdout)["fields"]
    assert fields["total_cents"] == 775
    assert fields["date"] == "2026-03-04"
    assert fields["card_last4"] == "1234"
    assert "CORNER COFFEE" in fields["vendor"]


def test_scan_refuses_a_non_image_with_one_line(tmp_path):
    """A text file named .jpg is refused by content, exit 2, no traceback."""
    path = tmp_path / "fake.jpg"
    path.write_text("not an image")
    result = runner.invoke(app, ["receipt", "scan", str(path)])
    assert result.exit_code == 2
    assert "not a supported receipt" in result.output
    assert "Traceback" not in result.output
