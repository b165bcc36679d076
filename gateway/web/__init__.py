"""The web view: a live screen of the market (``cea serve --web-port``) and of a finished run
(``cea view DIR``), served with aiohttp, drawn in the browser with plain HTML/JS and uPlot.

Everything the pages need ships in ``STATIC`` (no network fetch at run time): the pages, their
scripts and style, and uPlot (MIT; ``uPlot-LICENSE.txt``). Prices and money travel as integer
fen, quantities as integer tonnes; the pages format them.
"""

from pathlib import Path

#: The pages, scripts, style sheets and the vendored uPlot.
STATIC = Path(__file__).resolve().parent / "static"
