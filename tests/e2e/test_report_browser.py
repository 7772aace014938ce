"""The design report as a person sees it: report.html loaded in headless Chromium (Debian's
``chromium``), every section found and every image decoded (naturalWidth > 0).

A copy of the page gets a small script that writes what the browser found into the DOM; Chromium
prints the DOM after the page settled (``--dump-dom``) and the test reads it back. Without
Chromium the test skips, except under CI=true, where it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from feedstack.report.build import STAGES, build_report
from feedstack.storage import measurements
from tests.unit.test_report import small_spec, write_records

PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => ({alt: i.alt, w: i.naturalWidth, ok: i.complete}));
  const sections = [...document.querySelectorAll('section[id]')].map(s => s.id);
  const first = document.querySelector('section');
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify({imgs, sections,
    first_tables: first ? first.querySelectorAll('table').length : 0,
    first_imgs: first ? first.querySelectorAll('img').length : 0});
  document.body.appendChild(out);
});
</script>"""


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        msg = "no chromium on PATH (Debian package chromium, tools/debian-packages)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {msg}")
        pytest.skip(msg)
    return path


def _probe(chromium: str, page: Path, tmp: Path) -> dict[str, object]:
    probed = page.with_name("probed.html")
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"), encoding="utf-8")
    out = subprocess.run(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp / 'chromium-profile'}", "--virtual-time-budget=5000",
         "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    m = re.search(r"<pre id=\"probe\">(.*?)</pre>", out.stdout, re.S)
    assert m, f"no probe output; chromium exit {out.returncode}: {out.stderr[-800:]}"
    doc: dict[str, object] = json.loads(m.group(1).replace("&amp;", "&").replace("&lt;", "<"))
    return doc


def test_report_renders_every_section_and_image(tmp_path: Path) -> None:
    chromium = _chromium()
    folder = tmp_path / "proj" / "measurements"
    write_records(folder)
    # The demo's own canaries and its live A/B (the records the report must read).
    rollout = {
        "bad_canary": {"outcome": "rolled_back", "minutes": 6, "canary_requests": 1800,
                       "reasons": ["ctr: mSPRT rejects"]},
        "better_canary": {"outcome": "promoted", "minutes": 70, "measured_ctr_lift": 0.1,
                          "true_ctr_lift": 0.09, "steps": [[10, "advance", 0.05]]},
    }  # fmt: skip
    for kind, result in (
        ("rollout-demo", rollout),
        ("abtest-live", {"lift": 0.12, "lift_low": 0.06, "lift_high": 0.18, "requests": 2000,
                         "significant": True, "srm_p_value": 0.5, "challenger_size": "30x7",
                         "users": [400, 410], "interval_level": 0.95}),
    ):  # fmt: skip
        rec = measurements.record(kind, result, command=["feedstack", "demo"])
        measurements.save(folder, rec)
    out = tmp_path / "report"
    doc = build_report(small_spec(), folder, out)
    # The interval [+6 %, +18 %] clears the spec's 5 % target.
    assert doc["problem"]["answers"]["ctr_lift"]["verdict"] == "meets"
    found = _probe(chromium, out / "report.html", tmp_path)
    assert found["sections"] == [key for key, _ in STAGES] + ["sources"]
    imgs = found["imgs"]
    assert isinstance(imgs, list) and len(imgs) == sum(len(s["plots"]) for s in doc.values())
    broken = [i["alt"] for i in imgs if not i["ok"] or i["w"] <= 0]
    assert not broken, f"images not rendered: {broken}"
    # The first page: the answers table and the design diagram.
    assert found["first_tables"] >= 1 and found["first_imgs"] == 1
