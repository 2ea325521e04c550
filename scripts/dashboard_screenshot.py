"""Render docs/dashboard.png: the local dashboard on the demo's data, at 1280 px.

Runs `metrics-agg demo --keep` into a temporary folder, serves its database the way the
README's recipe does (`serve --no-mapping`), opens the page in headless Chromium, enters
the key, waits for the charts and saves a full-page screenshot.

    .venv/bin/python scripts/dashboard_screenshot.py [--out docs/dashboard.png] [--records 5000]

Needs the `test` extra (Playwright) and a Chromium (`apt-get install chromium`, or
METRICS_AGG_CHROMIUM=/path/to/chrome).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from metrics_agg.local.server import LocalStack

WIDTH = 1280


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard.png"))
    parser.add_argument("--records", type=int, default=5000)
    args = parser.parse_args()
    exe = os.environ.get("METRICS_AGG_CHROMIUM") or shutil.which("chromium")
    if exe is None:
        print("no chromium executable (apt-get install chromium)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        demo = [sys.executable, "-m", "metrics_agg", "demo", "--keep", tmp]
        subprocess.run([*demo, "--records", str(args.records)], check=True, capture_output=True)
        with LocalStack(Path(tmp) / "demo.sqlite3", mapping=False, port=0) as stack:
            base = stack.endpoint.removesuffix("graphql")
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": WIDTH, "height": 900})
                page.goto(base)
                page.fill("#api-key", stack.api_key)
                page.click("#connect button[type=submit]")
                page.wait_for_function(
                    "() => document.querySelector('#charts').dataset.generation === "
                    "document.body.dataset.generation"
                )
                # One bar hovered, so the picture shows the tooltip too.
                bars = page.locator("section.chart[data-record-type=items] rect.bar")
                counts = [int(c) for c in bars.evaluate_all("rs => rs.map(r => r.dataset.count)")]
                busiest = counts.index(max(counts))
                # The whole page in one viewport: a full-page capture resizes the window,
                # which redraws the charts under the pointer.
                height = page.evaluate("() => document.documentElement.scrollHeight")
                page.set_viewport_size({"width": WIDTH, "height": height})
                page.wait_for_timeout(300)
                page.hover(f"section.chart[data-record-type=items] rect.hit[data-i='{busiest}']")
                page.wait_for_function("() => !document.querySelector('#tooltip').hidden")
                page.screenshot(path=str(args.out))
                browser.close()
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
