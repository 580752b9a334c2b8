"""A minimal SVG line chart, so the load-test reports need nothing beyond Python."""
import math
from html import escape

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
W, H, L, R, T, B = 720, 400, 80, 150, 40, 50


def _ticks(lo, hi, n=5):
    if hi <= lo:
        hi = lo + 1
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    start = math.floor(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 2)]


def _label(v):
    if abs(v) >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def line_chart(title, xlabel, ylabel, series, logx=False):
    """series: {name: [(x, y), ...]}; returns the SVG document as a string."""
    points = [(x, y) for pts in series.values() for x, y in pts if y == y]  # drop NaN
    if not points:
        return f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="60"><text x="10" y="30">{escape(title)}: no data</text></svg>'
    fx = (lambda v: math.log10(v)) if logx else (lambda v: v)
    xs = [fx(x) for x, _ in points]
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x1 = x0 + 1
    yt = _ticks(0, max(y for _, y in points) * 1.05)
    y0, y1 = yt[0], yt[-1]
    px = lambda v: L + (fx(v) - x0) / (x1 - x0) * (W - L - R)  # noqa: E731
    py = lambda v: H - B - (v - y0) / (y1 - y0) * (H - T - B)  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>']
    for v in yt:
        y = py(v)
        out.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">{_label(v)}</text>')
    xvals = sorted({x for x, _ in points})
    if len(xvals) > 12:
        xvals = xvals[:: max(1, len(xvals) // 10)]
    for v in xvals:
        x = px(v)
        out.append(f'<line x1="{x:.1f}" y1="{H - B}" x2="{x:.1f}" y2="{H - B + 4}" stroke="#333"/>')
        out.append(f'<text x="{x:.1f}" y="{H - B + 18}" text-anchor="middle">{_label(v)}</text>')
    out.append(f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="#333"/>')
    out.append(f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="#333"/>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 10}" text-anchor="middle">{escape(xlabel)}{" (log scale)" if logx else ""}</text>')
    out.append(f'<text x="18" y="{(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 18 {(T + H - B) / 2})">{escape(ylabel)}</text>')
    for i, (name, pts) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        good = [(x, y) for x, y in pts if y == y]
        if good:
            path = " ".join(f"{'M' if j == 0 else 'L'}{px(x):.1f},{py(y):.1f}" for j, (x, y) in enumerate(good))
            out.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
            if len(good) <= 40:
                out.extend(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}"/>' for x, y in good)
        out.append(f'<rect x="{W - R + 15}" y="{T + 18 * i}" width="12" height="12" fill="{color}"/>')
        out.append(f'<text x="{W - R + 32}" y="{T + 18 * i + 11}">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)
