"""The README's trend-page picture: a synthetic nightly series (eight nights, one regression) opened
in headless Chromium and photographed.

    python scripts/trend_screenshot.py --out docs/img/nightly_trend.png

Needs the Debian package ``chromium`` and the ``playwright`` package (dev extra).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.fixtures.synthetic_nightly import write_synthetic_series  # noqa: E402
from pipeline.report.trend import PAGE  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("docs/img/nightly_trend.png"))
    p.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = p.parse_args(argv)
    if not args.chromium:
        print("error: no Chromium (apt-get install -y chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "nightly"
        write_synthetic_series(root, nights=8, regression=5, benchmarks=("vqav2", "pope", "mme"),
                               methods=("full", "icctp", "cls"), budgets=(576, 64, 32), n_samples=3,
                               reports=False, trend=False)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1200, "height": 760})
            page.goto((root / PAGE).as_uri())
            page.wait_for_selector(".js-plotly-plot")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out))
            browser.close()
    print(f"screenshot: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
